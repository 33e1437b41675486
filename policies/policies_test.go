package policies

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/attachgate/attachgate/mailpart"
)

func size(n int64) *int64 { return &n }

// exampleRules are the rules of the README's example.
const exampleRules = `
- name: keep-small-images
  match: {content_types: ["image/*"], max_size: 1048576}
  action: keep
- name: block-executables
  match: {extensions: [".exe", ".scr", ".js"]}
  action: reject
- name: hold-external-finance
  match: {sender_domains: ["finance.example.com"], recipient_domains_not: ["example.com"]}
  action: hold
`

func mustEngine(t *testing.T, rules []Rule) *Engine {
	t.Helper()
	e, err := New(rules)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func parseRules(t *testing.T, doc string) []Rule {
	t.Helper()
	var rules []Rule
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("parse rules: %v", err)
	}
	return rules
}

func TestDecideExampleRules(t *testing.T) {
	e := mustEngine(t, parseRules(t, exampleRules))
	internal := Envelope{From: "alice@example.com", To: []string{"bob@example.com"}}
	finance := Envelope{From: "carol@finance.example.com", To: []string{"bob@example.com", "dave@partner.example.net"}}
	financeInternal := Envelope{From: "carol@finance.example.com", To: []string{"bob@example.com", "eve@sales.example.com"}}
	tests := []struct {
		name string
		env  Envelope
		part Part
		want Decision
	}{
		{"small image kept", internal, Part{Filename: "photo.png", ContentType: "image/png", Size: 1000}, Decision{Rule: "keep-small-images", Action: Keep}},
		{"image at the limit kept", internal, Part{Filename: "photo.png", ContentType: "image/png", Size: 1048576}, Decision{Rule: "keep-small-images", Action: Keep}},
		{"large image linked", internal, Part{Filename: "photo.png", ContentType: "image/png", Size: 1048577}, Decision{Rule: "", Action: Link}},
		{"pdf linked", internal, Part{Filename: "report.pdf", ContentType: "application/pdf", Size: 10}, Decision{Rule: "", Action: Link}},
		{"exe rejected", internal, Part{Filename: "setup.exe", ContentType: "application/octet-stream", Size: 10}, Decision{Rule: "block-executables", Action: Reject}},
		{"extension without case", internal, Part{Filename: "SETUP.EXE", ContentType: "application/octet-stream", Size: 10}, Decision{Rule: "block-executables", Action: Reject}},
		{"trailing dot and space ignored", internal, Part{Filename: "setup.exe. ", ContentType: "application/octet-stream", Size: 10}, Decision{Rule: "block-executables", Action: Reject}},
		{"js but not json", internal, Part{Filename: "data.json", ContentType: "application/json", Size: 10}, Decision{Rule: "", Action: Link}},
		{"first match wins: small image named .js", internal, Part{Filename: "x.js", ContentType: "image/gif", Size: 10}, Decision{Rule: "keep-small-images", Action: Keep}},
		{"external finance held", finance, Part{Filename: "q3.xlsx", ContentType: "application/vnd.ms-excel", Size: 10}, Decision{Rule: "hold-external-finance", Action: Hold}},
		{"internal finance linked", financeInternal, Part{Filename: "q3.xlsx", ContentType: "application/vnd.ms-excel", Size: 10}, Decision{Rule: "", Action: Link}},
		{"finance exe still rejected first", finance, Part{Filename: "a.scr", ContentType: "application/octet-stream", Size: 10}, Decision{Rule: "block-executables", Action: Reject}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.Decide(tt.env, tt.part); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decide = %+v, want %+v", got, tt.want)
			}
			// Early agrees with Decide, or asks for the size.
			early := tt.part
			early.Size = SizeUnknown
			if d, ok := e.Early(tt.env, early); ok && !reflect.DeepEqual(d, tt.want) {
				t.Errorf("Early = %+v, want %+v", d, tt.want)
			}
		})
	}
}

func TestMatchFields(t *testing.T) {
	env := Envelope{From: "Alice@Sub.Example.COM", To: []string{"bob@example.net", "carol@corp.example.org"}}
	part := Part{Filename: "Invoice-2026.PDF", ContentType: "application/pdf", Size: 5000}
	tests := []struct {
		name  string
		match Match
		want  bool
	}{
		{"empty match matches everything", Match{}, true},
		{"sender domain, subdomain and case", Match{SenderDomains: []string{"example.com"}}, true},
		{"sender exact subdomain", Match{SenderDomains: []string{"sub.example.com"}}, true},
		{"sender other domain", Match{SenderDomains: []string{"example.net"}}, false},
		{"sender suffix is not a subdomain", Match{SenderDomains: []string{"ample.com"}}, false},
		{"sender list is OR", Match{SenderDomains: []string{"x.test", "@example.com"}}, true},
		{"recipient any matches", Match{RecipientDomains: []string{"example.org"}}, true},
		{"recipient none matches", Match{RecipientDomains: []string{"example.com"}}, false},
		{"recipient_not: one outside", Match{RecipientDomainsNot: []string{"example.net"}}, true},
		{"recipient_not: all inside", Match{RecipientDomainsNot: []string{"example.net", "example.org"}}, false},
		{"content type glob", Match{ContentTypes: []string{"application/*"}}, true},
		{"content type exact, case", Match{ContentTypes: []string{"Application/PDF"}}, true},
		{"content type other", Match{ContentTypes: []string{"image/*"}}, false},
		{"extension without dot", Match{Extensions: []string{"pdf"}}, true},
		{"extension list", Match{Extensions: []string{".doc", ".pdf"}}, true},
		{"extension other", Match{Extensions: []string{".doc"}}, false},
		{"filename glob, case", Match{FilenameGlob: "invoice-*.pdf"}, true},
		{"filename glob other", Match{FilenameGlob: "receipt-*"}, false},
		{"min size below", Match{MinSize: size(5001)}, false},
		{"min size equal", Match{MinSize: size(5000)}, true},
		{"max size equal", Match{MaxSize: size(5000)}, true},
		{"max size above", Match{MaxSize: size(4999)}, false},
		{"max size zero", Match{MaxSize: size(0)}, false},
		{"all fields AND", Match{SenderDomains: []string{"example.com"}, ContentTypes: []string{"application/pdf"},
			Extensions: []string{".pdf"}, MinSize: size(1), MaxSize: size(10000), FilenameGlob: "*2026*"}, true},
		{"one field fails the AND", Match{SenderDomains: []string{"example.com"}, ContentTypes: []string{"image/*"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEngine(t, []Rule{{Name: "r", Match: tt.match, Action: Keep}})
			got := e.Decide(env, part).Action == Keep
			if got != tt.want {
				t.Errorf("match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNullSenderMatchesNoSenderDomain(t *testing.T) {
	e := mustEngine(t, []Rule{{Name: "r", Match: Match{SenderDomains: []string{"example.com"}}, Action: Reject}})
	if d := e.Decide(Envelope{From: "", To: []string{"a@example.com"}}, Part{Filename: "a", Size: 1}); d.Action != Link {
		t.Errorf("null sender: %+v", d)
	}
}

func TestEarlyAsksForTheSizeOnlyWhenNeeded(t *testing.T) {
	e := mustEngine(t, []Rule{
		{Name: "exe", Match: Match{Extensions: []string{".exe"}}, Action: Reject},
		{Name: "big", Match: Match{MinSize: size(100)}, Action: Quarantine},
		{Name: "rest", Action: Keep},
	})
	env := Envelope{From: "a@example.com", To: []string{"b@example.net"}}
	if d, ok := e.Early(env, Part{Filename: "a.exe", Size: SizeUnknown}); !ok || d.Action != Reject {
		t.Errorf("exe: %+v %v, want a final reject", d, ok)
	}
	if _, ok := e.Early(env, Part{Filename: "a.pdf", Size: SizeUnknown}); ok {
		t.Error("pdf: the size rule comes first, Early must ask for the size")
	}
	if d := e.Decide(env, Part{Filename: "a.pdf", Size: 100}); d.Action != Quarantine || d.Rule != "big" {
		t.Errorf("big pdf: %+v", d)
	}
	if d := e.Decide(env, Part{Filename: "a.pdf", Size: 99}); d.Action != Keep || d.Rule != "rest" {
		t.Errorf("small pdf: %+v", d)
	}
	var none *Engine
	if d, ok := none.Early(env, Part{}); !ok || d.Action != Link {
		t.Errorf("nil engine: %+v %v", d, ok)
	}
}

func TestVerdictStrongestWins(t *testing.T) {
	tests := []struct {
		parts    []Decision
		want     Action
		wantRule string
	}{
		{nil, Link, ""},
		{[]Decision{{Rule: "", Action: Link}, {Rule: "k", Action: Keep}}, Link, ""},
		{[]Decision{{Rule: "h", Action: Hold}, {Rule: "k", Action: Keep}}, Hold, "h"},
		{[]Decision{{Rule: "h", Action: Hold}, {Rule: "q", Action: Quarantine}}, Quarantine, "q"},
		{[]Decision{{Rule: "q", Action: Quarantine}, {Rule: "h", Action: Hold}}, Quarantine, "q"},
		{[]Decision{{Rule: "h", Action: Hold}, {Rule: "r", Action: Reject}, {Rule: "q", Action: Quarantine}}, Reject, "r"},
		{[]Decision{{Rule: "h1", Action: Hold}, {Rule: "h2", Action: Hold}}, Hold, "h1"},
	}
	for i, tt := range tests {
		v := Verdict{Action: Link}
		for _, d := range tt.parts {
			v.Add(d)
		}
		if v.Action != tt.want || v.Rule != tt.wantRule {
			t.Errorf("%d: verdict %+v, want %s by %q", i, v, tt.want, tt.wantRule)
		}
	}
}

func TestNewNamesTheKey(t *testing.T) {
	tests := []struct {
		name string
		rule Rule
		want string
	}{
		{"no name", Rule{Action: Keep}, "policies[0].name: must be set"},
		{"bad name", Rule{Name: "no spaces", Action: Keep}, "policies[0].name"},
		{"bad action", Rule{Name: "r", Action: "drop"}, `policies[0].action: want link, keep, reject, quarantine, approve or hold, got "drop"`},
		{"missing action", Rule{Name: "r"}, `policies[0].action`},
		{"bad content type", Rule{Name: "r", Action: Keep, Match: Match{ContentTypes: []string{"image"}}}, "policies[0].match.content_types"},
		{"bad glob", Rule{Name: "r", Action: Keep, Match: Match{ContentTypes: []string{"image/["}}}, "policies[0].match.content_types"},
		{"bad extension", Rule{Name: "r", Action: Keep, Match: Match{Extensions: []string{"."}}}, "policies[0].match.extensions"},
		{"bad domain", Rule{Name: "r", Action: Keep, Match: Match{SenderDomains: []string{"a b"}}}, "policies[0].match.sender_domains"},
		{"bad recipient domain", Rule{Name: "r", Action: Keep, Match: Match{RecipientDomainsNot: []string{""}}}, "policies[0].match.recipient_domains_not"},
		{"negative size", Rule{Name: "r", Action: Keep, Match: Match{MinSize: size(-1)}}, "policies[0].match.min_size"},
		{"min above max", Rule{Name: "r", Action: Keep, Match: Match{MinSize: size(10), MaxSize: size(5)}}, "policies[0].match.min_size: 10 is above"},
		{"bad file glob", Rule{Name: "r", Action: Keep, Match: Match{FilenameGlob: "[x"}}, "policies[0].match.filename_glob"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New([]Rule{tt.rule})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
	_, err := New([]Rule{{Name: "a", Action: Keep}, {Name: "a", Action: Link}})
	if err == nil || !strings.Contains(err.Error(), `policies[1].name: duplicate rule name "a"`) {
		t.Errorf("duplicate: %v", err)
	}
}

// testMail is a multipart mail with a body and the given attachments.
func testMail(files map[string][]byte, order []string, types map[string]string) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\nTo: b@example.net\r\nSubject: t\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/mixed; boundary=XX\r\n\r\n")
	b.WriteString("--XX\r\nContent-Type: text/plain\r\n\r\nhello\r\n")
	for _, name := range order {
		fmt.Fprintf(&b, "--XX\r\nContent-Type: %s\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=%q\r\n\r\n%s\r\n",
			types[name], name, base64.StdEncoding.EncodeToString(files[name]))
	}
	b.WriteString("--XX--\r\n")
	return b.Bytes()
}

func TestDryRun(t *testing.T) {
	e := mustEngine(t, parseRules(t, exampleRules))
	mail := testMail(map[string][]byte{"logo.png": make([]byte, 300), "setup.exe": make([]byte, 50), "r.pdf": make([]byte, 70)},
		[]string{"logo.png", "r.pdf", "setup.exe"},
		map[string]string{"logo.png": "image/png", "setup.exe": "application/octet-stream", "r.pdf": "application/pdf"})
	run, err := e.Test(bytes.NewReader(mail), mailpart.Limits{}, Envelope{From: "a@example.com", To: []string{"b@example.net"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Parts) != 4 {
		t.Fatalf("parts = %+v", run.Parts)
	}
	want := []Decision{{}, {Rule: "keep-small-images", Action: Keep}, {Rule: "", Action: Link}, {Rule: "block-executables", Action: Reject}}
	for i, p := range run.Parts {
		if !reflect.DeepEqual(p.Decision, want[i]) {
			t.Errorf("part %s: %+v, want %+v", p.Path, p.Decision, want[i])
		}
	}
	if run.Parts[1].Size != 300 {
		t.Errorf("size = %d, want the decoded 300", run.Parts[1].Size)
	}
	if run.Verdict.Action != Reject || run.Verdict.Rule != "block-executables" {
		t.Errorf("verdict = %+v", run.Verdict)
	}
	var out bytes.Buffer
	if err := run.Write(&out, "1h0m0s"); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"PART", "logo.png", "keep-small-images", "(not an attachment)", "message: reject by rule block-executables"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q:\n%s", s, out.String())
		}
	}
}

// TestDomainsMatchAsIDNAMapsThem: every spelling that names the same
// domain to an SMTPUTF8 next hop matches the same rule, on the rule side
// and on the address side.
func TestDomainsMatchAsIDNAMapsThem(t *testing.T) {
	tests := []struct {
		rule, rcpt string
		want       bool
	}{
		{"partner.test", "v@partner.test", true},
		{"partner.test", "v@\uff50\uff41\uff52\uff54\uff4e\uff45\uff52.test", true}, // full-width letters
		{"partner.test", "v@partner\u3002test", true},                               // ideographic full stop
		{"partner.test", "v@sub.partner\uff0etest", true},                           // full-width full stop, subdomain
		{"partner.test", "v@PARTNER.test.", true},
		{"bücher.test", "v@xn--bcher-kva.test", true}, // A-label of the rule's U-label
		{"xn--bcher-kva.test", "v@BÜCHER.test", true}, // U-label of the rule's A-label
		{"\uff50artner.test", "v@partner.test", true}, // rule written in full width
		{"bücher.test", "v@bucher.test", false},
		{"partner.test", "v@xpartner.test", false},
	}
	for _, tt := range tests {
		t.Run(tt.rule+" "+tt.rcpt, func(t *testing.T) {
			e := mustEngine(t, []Rule{{Name: "r", Match: Match{RecipientDomains: []string{tt.rule}}, Action: Keep}})
			got := e.Decide(Envelope{From: "a@corp.test", To: []string{tt.rcpt}}, Part{Filename: "a.pdf"}).Action == Keep
			if got != tt.want {
				t.Errorf("match = %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := New([]Rule{{Name: "r", Action: Keep, Match: Match{RecipientDomains: []string{"xn--zz.test"}}}}); err == nil ||
		!strings.Contains(err.Error(), "policies[0].match.recipient_domains") {
		t.Errorf("a rule domain IDNA cannot map: %v, want an error naming the key", err)
	}
	if _, err := Domain("xn--zz.test"); err == nil {
		t.Errorf("Domain accepted a broken A-label")
	}
}
