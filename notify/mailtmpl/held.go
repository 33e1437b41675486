package mailtmpl

import "time"

// HeldData fills the "held" mail: the sender's notice that a message is
// held for a while, with links to cancel it or send it at once.
type HeldData struct {
	Sender     string
	Recipients []string
	Subject    string   // decoded ("" when none)
	Files      []string // names of its attachments
	ReleaseAt  time.Time
	CancelURL  string // base_url/h/{token}: a page with one button
	SendNowURL string
}

// ApprovalData fills the "approval" mail: an approver is asked to approve
// or reject a held message.
type ApprovalData struct {
	Sender     string
	Recipients []string
	Subject    string
	Files      []string
	Rule       string    // the policy rule that asked for approval
	Deadline   time.Time // unapproved by then, it is rejected
	ViewURL    string    // a page with the message's text (not its files)
	ApproveURL string
	RejectURL  string
}

// ApprovalResultData fills the "approval-result" mail: the sender learns
// that an approver approved the message and it went out.
type ApprovalResultData struct {
	Subject    string
	Recipients []string
	Approver   string
	DecidedAt  time.Time
}

func sampleHeld() HeldData {
	return HeldData{Sender: "alice@corp.example", Recipients: []string{"bob@example.net", "carol@example.org"},
		Subject: "Quarterly report", Files: []string{"report.pdf", "figures.xlsx"},
		ReleaseAt: sampleTime.Add(5 * time.Minute), CancelURL: "https://files.example.com/h/cancel-token",
		SendNowURL: "https://files.example.com/h/send-token"}
}

func sampleApproval() ApprovalData {
	return ApprovalData{Sender: "alice@corp.example", Recipients: []string{"bob@example.net"},
		Subject: "Quarterly report", Files: []string{"report.pdf"}, Rule: "outside-approval",
		Deadline: sampleTime.Add(24 * time.Hour), ViewURL: "https://files.example.com/h/view-token",
		ApproveURL: "https://files.example.com/h/approve-token", RejectURL: "https://files.example.com/h/reject-token"}
}

func sampleApprovalResult() ApprovalResultData {
	return ApprovalResultData{Subject: "Quarterly report", Recipients: []string{"bob@example.net"},
		Approver: "boss@corp.example", DecidedAt: sampleTime}
}
