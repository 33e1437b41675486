package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestLinksProxyAndTLSKeys(t *testing.T) {
	bad := []struct{ name, yaml, want string }{
		{"bad proxy", "links:\n  trusted_proxies: [\"10.0.0.0/40\"]\n", "links.trusted_proxies"},
		{"cert without key", "links:\n  base_url: \"https://f.example\"\n  tls:\n    cert_file: a.pem\n", "links.tls: cert_file and key_file go together"},
		{"tls with http base url", "links:\n  base_url: \"http://f.example\"\n  tls:\n    cert_file: a.pem\n    key_file: b.pem\n", "links.tls: the link listener serves https"},
		{"unknown tls key", "links:\n  tls:\n    cert: a.pem\n", `unknown key "links.tls.cert"`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse(%q) = %v, want an error containing %q", tt.yaml, err, tt.want)
			}
		})
	}

	c, err := Parse(strings.NewReader("links:\n  base_url: \"https://files.example\"\n  trusted_proxies: [\"10.1.0.0/16\", \"192.0.2.7\"]\n  tls:\n    cert_file: c.pem\n    key_file: k.pem\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("192.0.2.7/32")}
	got := c.Links.Proxies()
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Proxies() = %v, want %v", got, want)
	}
	if !c.Links.HTTPS() || !c.Links.TLS.Enabled() {
		t.Fatalf("HTTPS() = %v, TLS.Enabled() = %v, want both true", c.Links.HTTPS(), c.Links.TLS.Enabled())
	}
	d, err := Parse(strings.NewReader("links:\n  base_url: \"http://files.example\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Links.HTTPS() || len(d.Links.Proxies()) != 0 {
		t.Fatalf("plain http config: HTTPS() = %v, proxies %v", d.Links.HTTPS(), d.Links.Proxies())
	}
}
