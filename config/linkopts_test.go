package config

import (
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/policies"
)

func TestLinkOptionsWithinBounds(t *testing.T) {
	c, err := Parse(strings.NewReader(`
links:
  default_expiry: 168h
  max_expiry: 720h
  max_downloads: 5
  max_downloads_cap: 20
policies:
  - name: external
    match: {recipient_domains_not: ["corp.example"]}
    action: link
    link:
      expiry: 72h
      max_downloads: 3
      verify: recipient-code
      notify_sender: receipt
      language: ja
  - name: internal
    action: link
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Links.MaxExpiry.D() != 720*time.Hour || c.Links.MaxDownloads != 5 || c.Links.MaxDownloadsCap != 20 {
		t.Fatalf("links = %+v", c.Links)
	}
	o := c.PolicyEngine().LinkOptions("external")
	if o.Expiry.D() != 72*time.Hour || o.MaxDownloads == nil || *o.MaxDownloads != 3 ||
		o.Verify != policies.VerifyRecipientCode || o.NotifySender != policies.NotifyReceipt || o.Language != "ja" {
		t.Fatalf("external's link options = %+v", o)
	}
	if o := c.PolicyEngine().LinkOptions("internal"); o.Expiry != 0 || o.MaxDownloads != nil || o.NotifySender != "" {
		t.Fatalf("a rule without a link block has options %+v", o)
	}

	d, err := Parse(strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if d.Links.MaxExpiry.D() != 720*time.Hour || d.Links.MaxDownloads != 0 || d.Links.MaxDownloadsCap != 0 {
		t.Fatalf("defaults: max_expiry %v, max_downloads %d, max_downloads_cap %d, want 720h, 0, 0",
			d.Links.MaxExpiry.D(), d.Links.MaxDownloads, d.Links.MaxDownloadsCap)
	}
}

func TestLinkOptionsValidation(t *testing.T) {
	rule := func(action, link string) string {
		return "policies:\n  - name: ok\n    action: link\n  - name: r\n    action: " + action + "\n    link:\n" + link
	}
	tests := []struct{ name, yaml, want string }{
		{"rule expiry over max", rule("link", "      expiry: 900h\n"),
			"policies[1].link.expiry: 900h exceeds links.max_expiry 720h"},
		{"rule expiry over lowered max", "links:\n  default_expiry: 24h\n  max_expiry: 48h\n" + rule("link", "      expiry: 72h\n"),
			"policies[1].link.expiry: 72h exceeds links.max_expiry 48h"},
		{"default expiry over max", "links:\n  default_expiry: 1000h\n",
			"links.default_expiry: 1000h exceeds links.max_expiry 720h"},
		{"max expiry zero", "links:\n  max_expiry: 0s\n", "links.max_expiry: must be a positive duration"},
		{"rule expiry not positive", rule("link", "      expiry: -1h\n"), `"-1h": want a positive duration`},
		{"rule expiry not a duration", rule("link", "      expiry: 3 days\n"), `"3 days" is not a duration`},
		{"rule downloads over cap", "links:\n  max_downloads: 5\n  max_downloads_cap: 20\n" + rule("link", "      max_downloads: 21\n"),
			"policies[1].link.max_downloads: 21 exceeds links.max_downloads_cap 20"},
		{"rule unlimited under cap", "links:\n  max_downloads: 5\n  max_downloads_cap: 20\n" + rule("link", "      max_downloads: 0\n"),
			"policies[1].link.max_downloads: 0 (unlimited) exceeds links.max_downloads_cap 20"},
		{"default unlimited under cap", "links:\n  max_downloads_cap: 20\n",
			"links.max_downloads: 0 (unlimited) exceeds links.max_downloads_cap 20"},
		{"default over cap", "links:\n  max_downloads: 30\n  max_downloads_cap: 20\n",
			"links.max_downloads: 30 exceeds links.max_downloads_cap 20"},
		{"negative default", "links:\n  max_downloads: -1\n", "links.max_downloads: must be 0 (unlimited) or more"},
		{"negative cap", "links:\n  max_downloads_cap: -1\n", "links.max_downloads_cap: must be 0 (no cap) or more"},
		{"negative rule downloads", rule("link", "      max_downloads: -2\n"), "policies[1].link.max_downloads: must be 0 (unlimited) or more, got -2"},
		{"bad verify", rule("link", "      verify: password\n"), `policies[1].link.verify: want none or recipient-code, got "password"`},
		{"bad notify", rule("link", "      notify_sender: always\n"), `policies[1].link.notify_sender: want none, receipt or downloads, got "always"`},
		{"bad language", rule("link", "      language: fr\n"), `policies[1].link.language: want en, ja or both, got "fr"`},
		{"link on keep", rule("keep", "      expiry: 1h\n"), `policies[1].link: only for action link, quarantine, approve or hold`},
		{"link on reject", rule("reject", "      expiry: 1h\n"), `policies[1].link: only for action link, quarantine, approve or hold`},
		{"link on a mail rule", "policies:\n  - name: r\n    match: {senders: [\"a@corp.example\"]}\n    action: hold\n    link: {expiry: 1h}\n",
			`policies[0].link: not with mail fields`},
		{"link on a signed rule", "policies:\n  - name: r\n    match: {signed: true}\n    action: quarantine\n    link: {expiry: 1h}\n",
			`policies[0].link: not with match.signed or match.encrypted`},
		{"unknown link key", rule("link", "      expires: 1h\n"), `unknown key "policies[].link.expires"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse:\n%s\n= %v\nwant an error containing %q", tt.yaml, err, tt.want)
			}
		})
	}

	// At the bounds is fine.
	ok := "links:\n  default_expiry: 720h\n  max_downloads: 20\n  max_downloads_cap: 20\n" +
		rule("hold", "      expiry: 720h\n      max_downloads: 20\n      verify: none\n      notify_sender: none\n")
	if _, err := Parse(strings.NewReader(ok)); err != nil {
		t.Fatalf("options at the bounds refused: %v", err)
	}
}
