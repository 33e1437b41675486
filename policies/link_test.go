package policies

import (
	"bytes"
	"strings"
	"testing"

	"github.com/attachgate/attachgate/mailpart"
)

func TestLinkOptionsParsedAndLookedUp(t *testing.T) {
	e := mustEngine(t, parseRules(t, `
- name: external
  match: {recipient_domains_not: ["corp.example"]}
  action: link
  link: {expiry: 72h, max_downloads: 0, verify: recipient-code, notify_sender: downloads, language: ja}
- name: held
  match: {extensions: [".xls"]}
  action: hold
  link: {expiry: 90m}
- name: plain
  action: link
`))
	o := e.LinkOptions("external")
	if o.Expiry.String() != "72h" || o.MaxDownloads == nil || *o.MaxDownloads != 0 || o.Verify != VerifyRecipientCode ||
		o.NotifySender != NotifyDownloads || o.Language != "ja" {
		t.Errorf("external: %+v", o)
	}
	if o := e.LinkOptions("held"); o.Expiry.String() != "1h30m" {
		t.Errorf("held: expiry %s", o.Expiry)
	}
	for _, name := range []string{"plain", "", "no-such-rule"} {
		if o := e.LinkOptions(name); o != (LinkOptions{}) {
			t.Errorf("%q: %+v, want none", name, o)
		}
	}
	var nilEngine *Engine
	if o := nilEngine.LinkOptions("external"); o != (LinkOptions{}) {
		t.Errorf("nil engine: %+v", o)
	}
}

func TestNotifyRank(t *testing.T) {
	for v, want := range map[string]int{"": 0, NotifyNone: 0, NotifyReceipt: 1, NotifyDownloads: 2, "bogus": 0} {
		if got := NotifyRank(v); got != want {
			t.Errorf("NotifyRank(%q) = %d, want %d", v, got, want)
		}
	}
}

// TestDryRunShowsLinkOptions: the dry run says which options the links of
// a linking rule get.
func TestDryRunShowsLinkOptions(t *testing.T) {
	e := mustEngine(t, parseRules(t, `
- name: external
  match: {recipient_domains_not: ["corp.example"]}
  action: link
  link: {expiry: 72h, max_downloads: 3, notify_sender: receipt}
`))
	mail := testMail(map[string][]byte{"r.pdf": make([]byte, 70)}, []string{"r.pdf"}, map[string]string{"r.pdf": "application/pdf"})
	run, err := e.Test(bytes.NewReader(mail), mailpart.Limits{}, Envelope{From: "a@corp.example", To: []string{"b@example.net"}})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run.Write(&out, "1h"); err != nil {
		t.Fatal(err)
	}
	want := "links of rule external: expiry 72h, max_downloads 3, notify_sender receipt (the rest: links.* defaults)\n"
	if !strings.Contains(out.String(), want) {
		t.Errorf("dry run lacks %q:\n%s", want, out.String())
	}
	run, err = e.Test(bytes.NewReader(mail), mailpart.Limits{}, Envelope{From: "a@corp.example", To: []string{"b@corp.example"}})
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	run.Write(&out, "1h")
	if strings.Contains(out.String(), "links of rule") {
		t.Errorf("no rule with options matched, yet:\n%s", out.String())
	}
}
