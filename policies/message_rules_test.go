package policies

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/attachgate/attachgate/mailpart"
)

const messageRules = `
- name: quarantine-encrypted-external
  match: {encrypted: true, recipient_domains_not: ["example.com"]}
  action: quarantine
- name: reject-signed-from-lab
  match: {signed: true, sender_domains: ["lab.example.com"]}
  action: reject
- name: block-pdf
  match: {content_types: ["application/pdf"]}
  action: reject
`

// Issue 9.16: signed and encrypted mail is matched as a whole by message
// rules; attachment rules never see it.
func TestDecideMessage(t *testing.T) {
	e := mustEngine(t, parseRules(t, messageRules))
	internal := Envelope{From: "a@example.com", To: []string{"b@example.com"}}
	external := Envelope{From: "a@example.com", To: []string{"b@example.com", "c@partner.test"}}
	lab := Envelope{From: "x@lab.example.com", To: []string{"b@example.com"}}
	tests := []struct {
		name string
		env  Envelope
		m    Message
		want Decision
	}{
		{"encrypted to outside", external, Message{Encrypted: true}, Decision{Rule: "quarantine-encrypted-external", Action: Quarantine}},
		{"encrypted inside", internal, Message{Encrypted: true}, Decision{Action: Link}},
		{"signed from lab", lab, Message{Signed: true}, Decision{Rule: "reject-signed-from-lab", Action: Reject}},
		{"signed elsewhere", external, Message{Signed: true}, Decision{Action: Link}},
		{"neither", lab, Message{}, Decision{Action: Link}},
		{"signed and encrypted to outside", external, Message{Signed: true, Encrypted: true}, Decision{Rule: "quarantine-encrypted-external", Action: Quarantine}},
	}
	for _, tc := range tests {
		if got := e.DecideMessage(tc.env, tc.m); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	// Message rules never decide an attachment: the encrypted rule would
	// match any attachment to an external recipient otherwise.
	if d := e.Decide(external, Part{Filename: "a.txt", ContentType: "text/plain", Size: 1}); d.Action != Link {
		t.Errorf("attachment decided by a message rule: %+v", d)
	}
	if d, ok := e.Early(lab, Part{Filename: "a.txt", ContentType: "text/plain", Size: SizeUnknown}); !ok || d.Action != Link {
		t.Errorf("Early: %+v %v", d, ok)
	}
	var nilEngine *Engine
	if d := nilEngine.DecideMessage(external, Message{Signed: true}); d.Action != Link {
		t.Errorf("nil engine: %+v", d)
	}
}

func TestMessageRuleValidation(t *testing.T) {
	tests := []struct {
		name string
		rule Rule
		want string
	}{
		{"keep", Rule{Name: "a", Match: Match{Signed: true}, Action: Keep}, `policies[0].action: "keep" cannot apply to signed mail (match.signed)`},
		{"link", Rule{Name: "a", Match: Match{Encrypted: true}, Action: Link}, `policies[0].action: "link" cannot apply to encrypted mail (match.encrypted)`},
		{"hold", Rule{Name: "a", Match: Match{Encrypted: true}, Action: Hold}, `want reject or quarantine`},
		{"with extensions", Rule{Name: "a", Match: Match{Signed: true, Extensions: []string{".exe"}}, Action: Reject}, `policies[0].match.signed: matches the whole message`},
		{"with size", Rule{Name: "a", Match: Match{Encrypted: true, MaxSize: size(1)}, Action: Reject}, `policies[0].match.encrypted: matches the whole message`},
	}
	for _, tc := range tests {
		_, err := New([]Rule{tc.rule})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
	if _, err := New([]Rule{{Name: "a", Match: Match{Signed: true, SenderDomains: []string{"x.test"}}, Action: Quarantine}}); err != nil {
		t.Errorf("valid message rule refused: %v", err)
	}
}

const signedMail = "From: a@lab.example.com\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=s\r\n\r\n" +
	"--s\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\nContent-Type: text/plain\r\n\r\nhi\r\n" +
	"--m\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n%PDF\r\n--m--\r\n" +
	"--s\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n\r\nMIAG\r\n--s--\r\n"

func TestDryRunSignedMail(t *testing.T) {
	e := mustEngine(t, parseRules(t, messageRules))
	// The PDF inside is not an attachment: block-pdf does not apply, and
	// the message passes through untouched.
	d, err := e.Test(strings.NewReader(signedMail), mailpart.Limits{}, Envelope{From: "a@example.com", To: []string{"b@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := d.Write(&out, "1h"); err != nil {
		t.Fatal(err)
	}
	if d.PassThrough != mailpart.PassSigned || d.Verdict.Action != Link ||
		!strings.Contains(out.String(), "message: relay untouched (signed mail: nothing linked, no notice)") ||
		!strings.Contains(out.String(), "(signed mail, untouched)") {
		t.Errorf("dry run %+v:\n%s", d, out.String())
	}
	// From the lab, the message rule rejects it.
	d, err = e.Test(strings.NewReader(signedMail), mailpart.Limits{}, Envelope{From: "a@lab.example.com", To: []string{"b@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	d.Write(&out, "1h")
	if d.Verdict.Action != Reject || !strings.Contains(out.String(), "reject by rule reject-signed-from-lab") {
		t.Errorf("dry run %+v:\n%s", d, out.String())
	}
}

// Issue 9.18: a file inside winmail.dat is decided by the name it gets
// once read, and keep links it (winmail.dat leaves the mail whole).
func TestTNEFFilesDecidedByFinalName(t *testing.T) {
	e := mustEngine(t, parseRules(t, `
- name: no-xlsx
  match: {extensions: [".xlsx"]}
  action: reject
- name: keep-text
  match: {content_types: ["text/*"]}
  action: keep
`))
	env := Envelope{From: "a@example.com", To: []string{"b@example.net"}}
	mp := &mailpart.Part{Filename: "BUDGET~1.XLS", MediaType: "application/vnd.ms-excel", Container: "1.2", Provisional: true}
	pp := PartOf(mp)
	if _, ok := e.Early(env, pp); ok {
		t.Fatal("Early decided on a provisional name")
	}
	mp.Filename, mp.MediaType, mp.Provisional = "budget.xlsx", "application/octet-stream", false
	pp.Size = 10
	if d := e.Decide(env, pp); d.Action != Reject || d.Rule != "no-xlsx" {
		t.Errorf("final name: %+v", d)
	}
	txt := PartOf(&mailpart.Part{Filename: "notes.txt", MediaType: "text/plain", Container: "1.2"})
	if d, ok := e.Early(env, txt); !ok || d.Action != Link || d.Rule != "keep-text" {
		t.Errorf("keep inside TNEF: %+v %v", d, ok)
	}
	plain := PartOf(&mailpart.Part{Filename: "notes.txt", MediaType: "text/plain"})
	if d, _ := e.Early(env, plain); d.Action != Keep {
		t.Errorf("keep outside TNEF: %+v", d)
	}
}
