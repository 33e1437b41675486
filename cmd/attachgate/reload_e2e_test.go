package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/smtptest"
)

// TestSIGHUPReloadsConfiguration: after the configuration file changes
// and SIGHUP, new mail follows the new policies and DKIM keys, the admin
// API takes the new tokens, metrics networks and trusted proxies only, and STARTTLS presents the new
// certificate — without a restart. A configuration that does not validate
// changes nothing.
func TestSIGHUPReloadsConfiguration(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	certA, certB := smtptest.NewCert(t), smtptest.NewCert(t)
	keyFile, txt := keygen(t, "example.com", "s1", "ed25519")
	adminAddr := freeAddr(t)
	tokenA, tokenB := "reload-token-a-0123456789", "reload-token-b-0123456789"
	hash := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	// metricsNetworks doubles as admin.trusted_proxies: both are
	// ["127.0.0.1"] at first and emptied by the reload.
	section := func(token string, metricsNetworks string) string {
		return fmt.Sprintf(`admin:
  listen: %q
  metrics_networks: %s
  trusted_proxies: %s
  tokens:
    - {name: ops, sha256: %q, role: admin, networks: ["127.0.0.0/8"]}
`, adminAddr, metricsNetworks, metricsNetworks, hash(token))
	}
	dir := t.TempDir()
	smtpAddr, linkAddr := freeAddr(t), freeAddr(t)
	base := fmt.Sprintf(`smtp:
  listen: %q
  hostname: "gw.test"
  trusted_networks: ["127.0.0.0/8"]
  tls:
    cert_file: %q
    key_file: %q
next_hop:
  address: %q
  tls: none
links:
  listen: %q
  base_url: "http://%s"
storage:
  dir: %q
`, smtpAddr, certA.CertFile, certA.KeyFile, hop.Addr, linkAddr, linkAddr, dir+"/data")
	d := &daemon{t: t, dir: dir, config: dir + "/attachgate.yaml", smtpAddr: smtpAddr,
		linkURL: "http://" + linkAddr, log: &lockedBuffer{}, exited: make(chan error, 1)}
	writeConfig := func(extra string) {
		t.Helper()
		if err := os.WriteFile(d.config, []byte(base+extra), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(section(tokenA, `["127.0.0.1"]`))
	d.start()
	waitLog(t, d, "attachgate serving")

	adminGET := func(token string, xForwardedFor ...string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+adminAddr+"/admin/links/0197a3c2-5d1e-7b4f-9a20-3c1d2e4f5a6b", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		for _, x := range xForwardedFor {
			req.Header.Add("X-Forwarded-For", x)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	exe := func() error {
		msg := []byte("From: alice@example.com\r\nTo: bob@example.net\r\nSubject: tool\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n" +
			"--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=setup.exe\r\n\r\nMZ\r\n--b--\r\n")
		return d.send("alice@example.com", []string{"bob@example.net"}, msg)
	}
	peerCert := func() []byte {
		t.Helper()
		c, err := smtp.DialStartTLS(d.smtpAddr, &tls.Config{InsecureSkipVerify: true}) // the test compares the certificate itself
		if err != nil {
			t.Fatalf("STARTTLS: %v", err)
		}
		defer c.Close()
		if err := c.Noop(); err != nil { // completes the handshake
			t.Fatal(err)
		}
		st, _ := c.TLSConnectionState()
		return st.PeerCertificates[0].Raw
	}
	scrape := func() int { // GET /metrics without a token
		t.Helper()
		resp, err := http.Get("http://" + adminAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	reloads := 0
	hup := func(wantLog string) {
		t.Helper()
		reloads++
		d.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(d.log.String(), "SIGHUP: key ring") < reloads {
			if time.Now().After(deadline) {
				t.Fatalf("no reload logged\n%s", d.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(d.log.String(), wantLog) {
			t.Fatalf("log lacks %q\n%s", wantLog, d.log.String())
		}
	}

	if code := adminGET(tokenA); code != 404 {
		t.Fatalf("token A before reload: %d, want 404 (authenticated, unknown link)", code)
	}
	if code := scrape(); code != 200 {
		t.Fatalf("scrape from a metrics network before reload: %d, want 200", code)
	}
	if code := adminGET(tokenA, "192.0.2.9"); code != 403 {
		t.Fatalf("token A through trusted proxy 127.0.0.1 for 192.0.2.9: %d, want 403 (not the token's network)", code)
	}
	if err := exe(); err != nil {
		t.Fatalf("no policies yet, .exe must be linked: %v", err)
	}
	if got := hop.Messages(); len(got) != 1 || bytes.Contains(got[0].Data, []byte("DKIM-Signature")) {
		t.Fatalf("before reload: %d messages, signed=%v", len(got), len(got) == 1 && bytes.Contains(got[0].Data, []byte("DKIM-Signature")))
	}
	if !bytes.Equal(peerCert(), certA.TLS.Certificate[0]) {
		t.Fatal("STARTTLS does not present certificate A")
	}

	// New configuration: a reject rule, a DKIM key, token B instead of A,
	// and certificate B in the files the configuration names.
	writeConfig(fmt.Sprintf(`policies:
  - name: block-exe
    match: {extensions: [".exe"]}
    action: reject
dkim:
  - {domain: example.com, selector: s1, key_file: %q}
`, keyFile) + section(tokenB, "[]"))
	for _, f := range [][2]string{{certB.CertFile, certA.CertFile}, {certB.KeyFile, certA.KeyFile}} {
		data, _ := os.ReadFile(f[0])
		os.WriteFile(f[1], data, 0o600)
	}
	hup("SIGHUP: admin tokens reloaded")

	err := exe()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || !strings.Contains(se.Message, "block-exe") {
		t.Fatalf("after reload the .exe must be refused by block-exe, got %v", err)
	}
	if code := adminGET(tokenA); code != 401 {
		t.Fatalf("old token after reload: %d, want 401", code)
	}
	if code := adminGET(tokenB); code != 404 {
		t.Fatalf("new token after reload: %d, want 404", code)
	}
	if code := scrape(); code != 401 {
		t.Fatalf("scrape without a token after metrics_networks was emptied: %d, want 401", code)
	}
	if code := adminGET(tokenB, "192.0.2.9"); code != 404 {
		t.Fatalf("X-Forwarded-For after trusted_proxies was emptied: %d, want 404 (the header is no longer believed)", code)
	}
	if !bytes.Equal(peerCert(), certB.TLS.Certificate[0]) {
		t.Fatal("STARTTLS does not present certificate B after SIGHUP")
	}
	if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("a.pdf", []byte("%PDF-1.4"))); err != nil {
		t.Fatal(err)
	}
	got := hop.Messages()
	vs := verifyDKIM(t, got[len(got)-1].Data, map[string]string{"s1._domainkey.example.com": txt})
	if len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("mail after reload is not signed with the new key: %s", describe(vs))
	}

	// A broken file: everything stays as it is.
	writeConfig("policies:\n  - name: x\n    action: explode\n" + section(tokenA, `["127.0.0.1"]`))
	hup("SIGHUP: configuration not reloaded")
	if code := adminGET(tokenB); code != 404 {
		t.Fatalf("token B after a failed reload: %d", code)
	}
	if code := scrape(); code != 401 {
		t.Fatalf("metrics networks after a failed reload: scrape %d, want 401", code)
	}
	if code := adminGET(tokenB, "192.0.2.9"); code != 404 {
		t.Fatalf("trusted proxies after a failed reload: %d, want 404 (still none)", code)
	}
	if err := exe(); !errors.As(err, &se) || se.Code != 550 {
		t.Fatalf("policies after a failed reload: %v", err)
	}
}

// waitLog waits until the daemon's log contains s.
func waitLog(t *testing.T, d *daemon, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(d.log.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q\n%s", s, d.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSIGHUPMetricsNetworksWithAdminOff: admin.metrics_networks is now
// reloaded by SIGHUP, but an admin API that was off at start (no tokens,
// no metrics networks) cannot be turned on by it. A metrics network added
// to the file then must say so in the log, as a token added does: the
// operator who follows the reload table otherwise waits for scrapes that
// never come (nothing listens) with no word why.
func TestSIGHUPMetricsNetworksWithAdminOff(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, fmt.Sprintf("admin:\n  listen: %q\n", freeAddr(t)))
	waitLog(t, d, "attachgate serving")
	waitLog(t, d, "admin API off")
	cfg, err := os.ReadFile(d.config)
	if err != nil {
		t.Fatal(err)
	}
	// The admin section is last: the line lands under admin.
	if err := os.WriteFile(d.config, append(cfg, "  metrics_networks: [\"127.0.0.1\"]\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, d, "SIGHUP: key ring")
	if !strings.Contains(d.log.String(), "restart to turn it on") {
		t.Fatalf("admin.metrics_networks added while the admin API is off: SIGHUP logs no word of a restart\n%s", d.log.String())
	}
}
