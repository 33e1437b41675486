package policies

import (
	"net/textproto"
	"strings"
	"testing"
	"time"
)

const mailRules = `
- name: block-pdf-attachments
  match: {content_types: ["application/pdf"]}
  action: reject
- name: ceo-needs-approval
  match: {senders: ["ceo@corp.example"], recipient_domains_not: ["corp.example"]}
  action: approve
  approvers: ["assistant@corp.example", "Chief@Corp.Example"]
  approval_timeout: 4h
- name: confidential-subject
  match: {subject_regex: "(?i)confidential|社外秘"}
  action: quarantine
- name: urgent-header
  match: {header_regex: {"X-Priority": "^1"}}
  action: hold
  hold_for: 10m
- name: many-outsiders
  match: {min_external_recipients: 3, internal_domains: ["corp.example"]}
  action: hold
- name: interns-xlsx
  match: {auth_users: ["intern1"], extensions: [".xlsx"]}
  action: reject
- name: everything-from-lab
  match: {sender_domains: ["lab.corp.example"]}
  action: hold
`

type header map[string][]string

func (h header) Values(name string) []string { return h[textproto.CanonicalMIMEHeaderKey(name)] }

// Issue 12.1: message-level rules decide about every mail, with or
// without attachments, from the sender, the AUTH identity, the subject and
// other header fields and the number of external recipients.
func TestDecideMail(t *testing.T) {
	e := mustEngine(t, parseRules(t, mailRules))
	pdf := Part{Filename: "a.pdf", ContentType: "application/pdf", Size: 10}
	xlsx := Part{Filename: "Q3.XLSX", ContentType: "application/vnd.ms-excel", Size: 10}
	in := []string{"b@corp.example"}
	out := []string{"b@corp.example", "x@partner.test"}
	tests := []struct {
		name string
		env  Envelope
		mail Mail
		want Decision
	}{
		{"plain internal mail", Envelope{From: "a@corp.example", To: in}, Mail{Subject: "lunch"}, Decision{Action: Link}},
		{"ceo to outside, no attachment", Envelope{From: "CEO@corp.example", To: out}, Mail{Subject: "hi"},
			Decision{Rule: "ceo-needs-approval", Action: Approve, Approvers: []string{"assistant@corp.example", "chief@corp.example"}, ApprovalTimeout: 4 * time.Hour}},
		{"ceo inside", Envelope{From: "ceo@corp.example", To: in}, Mail{}, Decision{Action: Link}},
		{"confidential subject, any case", Envelope{From: "a@corp.example", To: in}, Mail{Subject: "Re: CONFIDENTIAL plan"},
			Decision{Rule: "confidential-subject", Action: Quarantine}},
		{"Japanese subject", Envelope{From: "a@corp.example", To: in}, Mail{Subject: "【社外秘】見積"},
			Decision{Rule: "confidential-subject", Action: Quarantine}},
		{"header regex", Envelope{From: "a@corp.example", To: in}, Mail{Header: header{"X-Priority": {"3", "1 (Highest)"}}},
			Decision{Rule: "urgent-header", Action: Hold, HoldFor: 10 * time.Minute}},
		{"header regex no match", Envelope{From: "a@corp.example", To: in}, Mail{Header: header{"X-Priority": {"3"}}}, Decision{Action: Link}},
		{"two outsiders", Envelope{From: "a@corp.example", To: []string{"x@a.test", "y@b.test", "z@sub.corp.example"}}, Mail{}, Decision{Action: Link}},
		{"three outsiders", Envelope{From: "a@corp.example", To: []string{"x@a.test", "y@b.test", "w@c.test", "z@corp.example"}}, Mail{},
			Decision{Rule: "many-outsiders", Action: Hold}},
		{"intern with xlsx", Envelope{From: "i@corp.example", To: in, AuthUser: "intern1"}, Mail{Attachments: []Part{pdfLess(pdf), xlsx}},
			Decision{Rule: "interns-xlsx", Action: Reject}},
		{"intern without xlsx", Envelope{From: "i@corp.example", To: in, AuthUser: "intern1"}, Mail{Attachments: []Part{pdfLess(pdf)}}, Decision{Action: Link}},
		{"someone else with xlsx", Envelope{From: "i@corp.example", To: in, AuthUser: "bob"}, Mail{Attachments: []Part{xlsx}}, Decision{Action: Link}},
		{"envelope-only message rule applies without attachments", Envelope{From: "x@lab.corp.example", To: in}, Mail{},
			Decision{Rule: "everything-from-lab", Action: Hold}},
		// An attachment rule (attachment fields, no mail fields) is decided
		// per part as the part streams, never here.
		{"attachment rule not a mail rule", Envelope{From: "a@corp.example", To: in}, Mail{Attachments: []Part{pdf}}, Decision{Action: Link}},
		// First matching mail rule wins.
		{"ceo with confidential subject", Envelope{From: "ceo@corp.example", To: out}, Mail{Subject: "confidential"},
			Decision{Rule: "ceo-needs-approval", Action: Approve, Approvers: []string{"assistant@corp.example", "chief@corp.example"}, ApprovalTimeout: 4 * time.Hour}},
		// Bounces are never held or refused by mail rules.
		{"null sender", Envelope{From: "", To: out}, Mail{Subject: "confidential"}, Decision{Action: Link}},
	}
	for _, tt := range tests {
		got := e.DecideMail(tt.env, tt.mail)
		if got.Rule != tt.want.Rule || got.Action != tt.want.Action || got.HoldFor != tt.want.HoldFor ||
			strings.Join(got.Approvers, ",") != strings.Join(tt.want.Approvers, ",") || got.ApprovalTimeout != tt.want.ApprovalTimeout {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
	// Rules with mail fields are never decided per attachment: the
	// subject is not known there.
	if d := e.Decide(Envelope{From: "i@corp.example", To: in, AuthUser: "intern1"}, xlsx); d.Action != Link {
		t.Errorf("mail rule decided an attachment: %+v", d)
	}
	// A verdict keeps the hold settings of the rule that decided.
	var v Verdict
	v.Add(Decision{Rule: "h", Action: Hold, HoldFor: time.Minute})
	v.Add(Decision{Rule: "a", Action: Approve, Approvers: []string{"b@corp.example"}, ApprovalTimeout: time.Hour})
	v.Add(Decision{Rule: "h2", Action: Hold, HoldFor: time.Hour})
	if v.Action != Approve || v.Rule != "a" || v.HoldFor != 0 || len(v.Approvers) != 1 || v.ApprovalTimeout != time.Hour {
		t.Errorf("verdict %+v", v)
	}
}

func pdfLess(p Part) Part { p.ContentType = "text/plain"; p.Filename = "notes.txt"; return p }

func TestMailRuleValidationNamesTheKey(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"mail field with link", "- name: a\n  match: {subject_regex: x}\n  action: link\n", `policies[0].action: "link" cannot apply with mail fields`},
		{"bad regex", "- name: a\n  match: {subject_regex: \"(\"}\n  action: hold\n", `policies[0].match.subject_regex: "(" is not a regular expression`},
		{"bad header name", "- name: a\n  match: {header_regex: {\"X Bad\": x}}\n  action: hold\n", `policies[0].match.header_regex.X Bad: "X Bad" is not a header field name`},
		{"bad sender", "- name: a\n  match: {senders: [\"not an address\"]}\n  action: hold\n", `policies[0].match.senders: "not an address" is not a mail address`},
		{"external without internal", "- name: a\n  match: {min_external_recipients: 2}\n  action: hold\n", `policies[0].match.min_external_recipients: needs match.internal_domains`},
		{"internal without count", "- name: a\n  match: {internal_domains: [corp.example]}\n  action: hold\n", `policies[0].match.internal_domains: is used only with match.min_external_recipients`},
		{"negative count", "- name: a\n  match: {min_external_recipients: -1, internal_domains: [corp.example]}\n  action: hold\n", `policies[0].match.min_external_recipients: must not be negative`},
		{"approve without approvers", "- name: a\n  match: {}\n  action: approve\n", `policies[0].approvers: action approve needs at least one approver`},
		{"bad approver", "- name: a\n  action: approve\n  approvers: [\"Boss <b@c.example>\"]\n", `policies[0].approvers: "boss <b@c.example>" is not a mail address`},
		{"approvers on hold", "- name: a\n  action: hold\n  approvers: [b@c.example]\n", `policies[0].approvers: is for action approve, not "hold"`},
		{"hold_for on quarantine", "- name: a\n  action: quarantine\n  hold_for: 5m\n", `policies[0].hold_for: is for action hold, not "quarantine"`},
		{"hold_for too long", "- name: a\n  action: hold\n  hold_for: 200h\n", `policies[0].hold_for: 200h0m0s is outside 1s..168h0m0s`},
		{"approval timeout too short", "- name: a\n  action: approve\n  approvers: [b@c.example]\n  approval_timeout: 10s\n", `policies[0].approval_timeout: 10s is outside 1m..336h0m0s`},
		{"signed with subject", "- name: a\n  match: {signed: true, subject_regex: x}\n  action: quarantine\n", `policies[0].match.signed: combines only with sender_domains, recipient_domains and recipient_domains_not, not with mail fields`},
		{"no attachments with attachment fields", "- name: a\n  match: {has_attachments: false, extensions: [.exe]}\n  action: reject\n", `policies[0].match.has_attachments: false cannot combine with attachment fields`},
	}
	for _, tt := range tests {
		_, err := New(parseRules(t, tt.doc))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New: %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}
