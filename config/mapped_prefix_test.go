package config

import (
	"strings"
	"testing"

	"github.com/attachgate/attachgate/clientip"
)

// TestMappedIPv4PrefixesMatchOrAreRefused: every HTTP listener compares
// client addresses after clientip.Parse, which unmaps ::ffff:a.b.c.d to
// a.b.c.d. A network written in IPv4-mapped form (as dual-stack logs show
// peers: ::ffff:10.0.0.5) was accepted by the configuration and then never
// matched: the proxy is never trusted, the token network or metrics network
// never admits anyone, with no word why. Such an entry must match the IPv4
// address it names, or be refused naming the key.
func TestMappedIPv4PrefixesMatchOrAreRefused(t *testing.T) {
	peer, _ := clientip.Parse("10.0.0.5")
	for _, tc := range []struct{ key, yaml string }{
		{"admin.trusted_proxies", "admin:\n  trusted_proxies: [\"::ffff:10.0.0.5\"]\n"},
		{"admin.trusted_proxies", "admin:\n  trusted_proxies: [\"::ffff:10.0.0.0/104\"]\n"},
		{"admin.metrics_networks", "admin:\n  metrics_networks: [\"::ffff:10.0.0.5\"]\n"},
		{"links.trusted_proxies", "links:\n  trusted_proxies: [\"::ffff:10.0.0.5\"]\n"},
		{"smtp.trusted_networks", "smtp:\n  trusted_networks: [\"::ffff:10.0.0.0/120\"]\n"},
	} {
		t.Run(tc.yaml, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tc.yaml))
			if err != nil {
				if !strings.Contains(err.Error(), tc.key) {
					t.Fatalf("refused without naming %s: %v", tc.key, err)
				}
				return
			}
			got := map[string]bool{
				"admin.trusted_proxies":  clientip.Contains(c.Admin.Proxies(), peer),
				"admin.metrics_networks": clientip.Contains(c.Admin.MetricsNets(), peer),
				"links.trusted_proxies":  clientip.Contains(c.Links.Proxies(), peer),
				"smtp.trusted_networks":  clientip.Contains(c.SMTP.Trusted(), peer),
			}[tc.key]
			if !got {
				t.Fatalf("%s accepted %q but it never matches the peer %s", tc.key, tc.yaml, peer)
			}
		})
	}
}
