package mailtmpl

import "time"

// CodeData fills the "code" mail: a one-time code that proves a visitor of
// a message's page is one of its recipients.
type CodeData struct {
	Code    string    // the digits
	Expires time.Time // when the code stops working
	Sender  string    // envelope sender of the message the code unlocks
	Subject string    // that message's subject, decoded ("" when unknown)
}

// DSNData fills the human-readable part of a delivery status notification.
type DSNData struct {
	Subject      string    // the original message's subject, decoded ("" when unknown)
	ArrivalDate  time.Time // when the gateway received the message
	Reason       string    // why, in words ("rejected by approver boss@corp.example")
	ReportingMTA string    // this gateway's host name
	Failed       []DSNRecipient
	Delayed      []DSNRecipient
	RetryUntil   time.Time // for delayed recipients: when the gateway gives up
}

// DSNRecipient is one recipient in a DSN's human-readable part.
type DSNRecipient struct {
	Address    string
	Status     string // x.y.z
	Diagnostic string // the next hop's reply, e.g. "550 5.1.1 No such user"
}

var sampleTime = time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)

func sampleCode() CodeData {
	return CodeData{Code: "12345678", Expires: sampleTime.Add(10 * time.Minute),
		Sender: "alice@corp.example", Subject: "Quarterly report"}
}

func sampleDSN() DSNData {
	r := DSNRecipient{Address: "bob@example.net", Status: "5.1.1", Diagnostic: "550 5.1.1 No such user"}
	return DSNData{Subject: "Quarterly report", ArrivalDate: sampleTime, Reason: "refused by the next hop",
		ReportingMTA: "gw.example.com", Failed: []DSNRecipient{r}, Delayed: []DSNRecipient{r},
		RetryUntil: sampleTime.Add(120 * time.Hour)}
}

// KindReceipt is the sender's receipt of a relayed message whose links a
// rule with notify_sender receipt or downloads made.
const KindReceipt = "receipt"

// ReceiptData fills the "receipt" mail, sent to the envelope sender once
// the next hop accepted the message.
type ReceiptData struct {
	Subject    string    // the message's subject, decoded ("" when it had none)
	Sent       time.Time // when the gateway received it
	Recipients []string  // envelope recipients
	Files      []ReceiptFile
	Expires    time.Time // when the last link expires
	ManageURL  string    // base_url/s/{token}: the sender's manage page
}

// ReceiptFile is one linked file in a receipt.
type ReceiptFile struct {
	Name    string
	Size    int64
	SHA256  string
	Expires time.Time
}

func sampleReceipt() ReceiptData {
	return ReceiptData{Subject: "Quarterly report", Sent: sampleTime,
		Recipients: []string{"bob@example.net", "carol@example.org"},
		Files: []ReceiptFile{{Name: "report.pdf", Size: 1572864, SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			Expires: sampleTime.Add(72 * time.Hour)}},
		Expires: sampleTime.Add(72 * time.Hour), ManageURL: "https://files.example.com/s/TOKEN"}
}
