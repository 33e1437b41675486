package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/attachgate/attachgate/smtptest"
)

// relayedToken sends a mail with one attachment and returns the token of
// the link that reached the next hop under baseURL.
func relayedToken(t *testing.T, d *daemon, hop *smtptest.Server, baseURL string) string {
	t.Helper()
	if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("report.pdf", []byte("quarterly figures"))); err != nil {
		t.Fatalf("send: %v", err)
	}
	msgs := hop.Messages()
	if len(msgs) == 0 {
		t.Fatal("nothing relayed")
	}
	plain := decodedText(t, msgs[len(msgs)-1].Data, "text/plain")
	m := regexp.MustCompile(regexp.QuoteMeta(baseURL) + `/d/([A-Za-z0-9_-]+)`).FindStringSubmatch(plain)
	if m == nil {
		t.Fatalf("no link under %s in:\n%s", baseURL, plain)
	}
	return m[1]
}

// Behind the TLS proxy links.base_url implies, downloads used to be
// audited with the proxy's address and the CSRF cookie lacked Secure: no
// key reached the link server's trusted proxies.
func TestLinksBehindTrustedProxy(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	const base = "https://files.example"
	d := startDaemonLinks(t, hop.Addr, base, "  trusted_proxies: [\"127.0.0.1/32\"]\n", "")
	token := relayedToken(t, d, hop, base)

	for _, hdr := range []map[string]string{
		{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
		{"X-Forwarded-For": "203.0.113.9"}, // a proxy that forgets the scheme
	} {
		req, _ := http.NewRequest(http.MethodGet, d.linkURL+"/d/"+token, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("landing page: status %d", resp.StatusCode)
		}
		var secure bool
		for _, c := range resp.Cookies() {
			if c.Name == "ag_csrf" {
				secure = c.Secure
			}
		}
		if !secure {
			t.Errorf("headers %v: CSRF cookie without Secure although base_url is https", hdr)
		}
		if hsts := resp.Header.Get("Strict-Transport-Security"); !strings.Contains(hsts, "max-age=") {
			t.Errorf("headers %v: no HSTS (%q)", hdr, hsts)
		}
	}
	var viewed int
	for _, e := range exportEvents(t, d) {
		if e["type"] != "link.viewed" {
			continue
		}
		viewed++
		if e["client_addr"] != "203.0.113.9" {
			t.Errorf("link.viewed audited with client %v, want the browser's 203.0.113.9", e["client_addr"])
		}
	}
	if viewed != 2 {
		t.Errorf("%d link.viewed events, want 2", viewed)
	}
}

// links.tls serves the link pages over HTTPS itself: TLS 1.2 or newer,
// HSTS on every answer, and a renewed certificate is picked up on SIGHUP.
func TestLinksTLS(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	cert := smtptest.NewCert(t)
	const base = "https://files.example"
	d := startDaemonLinks(t, hop.Addr, base,
		fmt.Sprintf("  tls:\n    cert_file: %q\n    key_file: %q\n", cert.CertFile, cert.KeyFile), "")
	addr := strings.TrimPrefix(d.linkURL, "https://")
	token := relayedToken(t, d, hop, base)

	client := func(cfg *tls.Config) *http.Client {
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	}
	resp, err := client(cert.ClientConfig()).Get(d.linkURL + "/d/" + token)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("landing page over TLS: status %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	if !strings.Contains(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("no HSTS over https: %q", resp.Header.Get("Strict-Transport-Security"))
	}

	old := cert.ClientConfig()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, err := tls.Dial("tcp", addr, old); err == nil {
		t.Error("a TLS 1.1 handshake succeeded")
	}

	// Renew: new files in place, SIGHUP, new connections see the new one.
	renewed := smtptest.NewCert(t)
	for src, dst := range map[string]string{renewed.CertFile: cert.CertFile, renewed.KeyFile: cert.KeyFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "link certificate reload", func() bool {
		return strings.Contains(d.log.String(), "link server certificate reloaded")
	})
	conn, err := tls.Dial("tcp", addr, renewed.ClientConfig())
	if err != nil {
		t.Fatalf("handshake with the renewed certificate: %v", err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(renewed.TLS.Leaf.SerialNumber) != 0 {
		t.Errorf("serving certificate %v after SIGHUP, want the renewed %v", got, renewed.TLS.Leaf.SerialNumber)
	}
}
