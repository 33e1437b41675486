package main

import (
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/attachgate/attachgate/smtptest"
)

// TestSIGHUPReloadsLinkTrustedProxies: a proxy removed from
// links.trusted_proxies stops choosing the link server's client address at
// the next request after SIGHUP. That address goes into every download
// event and keys the per-client denial limits and code lockouts; kept until
// a restart, the removed proxy (or whoever has its address now) still chose
// it.
func TestSIGHUPReloadsLinkTrustedProxies(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	const base = "https://files.example"
	const proxyLine = "  trusted_proxies: [\"127.0.0.1/32\"]\n"
	d := startDaemonLinks(t, hop.Addr, base, proxyLine, "")
	token := relayedToken(t, d, hop, base)

	cfg, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), proxyLine) {
		t.Fatalf("config lacks %q:\n%s", proxyLine, cfg)
	}
	if err := os.WriteFile(d.config, []byte(strings.Replace(string(cfg), proxyLine, "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, d, "SIGHUP: links.trusted_proxies reloaded")
	if strings.Contains(d.log.String(), "SIGHUP: configuration not reloaded") {
		t.Fatalf("the edited configuration did not load:\n%s", d.log.String())
	}

	req, _ := http.NewRequest(http.MethodGet, d.linkURL+"/d/"+token, nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("landing page: status %d", resp.StatusCode)
	}
	var viewed int
	for _, e := range exportEvents(t, d) {
		if e["type"] != "link.viewed" {
			continue
		}
		viewed++
		if e["client_addr"] != "127.0.0.1" {
			t.Errorf("links.trusted_proxies emptied and SIGHUP: link.viewed audited with client %v from X-Forwarded-For of the removed proxy, want the peer 127.0.0.1\nlog:\n%s",
				e["client_addr"], d.log.String())
		}
	}
	if viewed != 1 {
		t.Errorf("%d link.viewed events, want 1", viewed)
	}
}
