package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/smtptest"
)

const policyYAML = `policies:
  - name: keep-small-images
    match: {content_types: ["image/*"], max_size: 1048576}
    action: keep
  - name: block-executables
    match: {extensions: [".exe", ".scr", ".js"]}
    action: reject
  - name: review-macros
    match: {filename_glob: "*.docm"}
    action: quarantine
  - name: hold-external-finance
    match: {sender_domains: ["finance.example.com"], recipient_domains_not: ["example.com"]}
    action: hold
`

// multiMail is a mail with a text body and the named attachments.
func multiMail(files ...[2]string) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\nTo: b@example.net\r\nSubject: policy\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/mixed; boundary=\"pb\"\r\n\r\n--pb\r\nContent-Type: text/plain\r\n\r\nhello\r\n")
	for _, f := range files {
		content := make([]byte, 1000)
		rand.Read(content)
		fmt.Fprintf(&b, "--pb\r\nContent-Type: %s\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=%q\r\n\r\n%s\r\n",
			f[1], f[0], base64.StdEncoding.EncodeToString(content))
	}
	b.WriteString("--pb--\r\n")
	return b.Bytes()
}

func TestPolicyTestCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "attachgate.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("storage:\n  dir: %q\n%s", filepath.Join(dir, "data"), policyYAML)), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("policies:\n  - name: x\n    action: drop\n"), 0o600)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o600)
		return p
	}
	mixed := write("mixed.eml", multiMail([2]string{"logo.png", "image/png"}, [2]string{"report.pdf", "application/pdf"}))
	exe := write("exe.eml", multiMail([2]string{"report.pdf", "application/pdf"}, [2]string{"SETUP.EXE", "application/octet-stream"}))
	docm := write("docm.eml", multiMail([2]string{"budget.docm", "application/octet-stream"}))
	plain := write("plain.eml", []byte("Subject: hi\r\n\r\nno files\r\n"))

	tests := []struct {
		name     string
		args     []string
		code     int
		wantOut  []string
		wantErr  string
		notInOut []string
	}{
		{"keep and link", []string{"-config", cfg, "-from", "a@example.com", "-to", "b@example.net", mixed}, 0,
			[]string{"1.2", "logo.png", "image/png", "keep", "keep-small-images", "report.pdf", "link", "(default)",
				"(not an attachment)", "message: relay: 1 attachment(s) linked, 1 kept"}, "", nil},
		{"reject", []string{"--config", cfg, "--from", "a@example.com", "--to", "b@example.net", exe}, 0,
			[]string{"SETUP.EXE", "reject", "message: reject by rule block-executables: the client gets 550 5.7.1 Message refused by policy block-executables"}, "", nil},
		{"quarantine", []string{"-config", cfg, "-from", "a@example.com", "-to", "b@example.net", docm}, 0,
			[]string{"budget.docm", "quarantine", "message: quarantine by rule review-macros"}, "", nil},
		{"hold depends on the envelope", []string{"-config", cfg, "-from", "c@finance.example.com", "-to", "bob@example.com,dave@partner.example", mixed}, 0,
			[]string{"hold-external-finance", "message: hold by rule hold-external-finance: held, released after 1h0m0s"}, "", nil},
		{"internal finance mail is not held", []string{"-config", cfg, "-from", "c@finance.example.com", "-to", "bob@example.com, eve@sales.example.com", mixed}, 0,
			[]string{"message: relay"}, "", []string{"hold-external-finance"}},
		{"flags after the file", []string{mixed, "-config", cfg, "-from", "a@example.com", "-to", "b@example.net"}, 0,
			[]string{"keep-small-images"}, "", nil},
		{"no attachments", []string{"-config", cfg, "-from", "a@example.com", "-to", "b@example.net", plain}, 0,
			[]string{"message: relay: 0 attachment(s) linked, 0 kept"}, "", nil},
		{"no recipients", []string{"-config", cfg, "-from", "a@example.com", mixed}, 2, nil, "-to ADDR[,ADDR] is required", nil},
		{"no sender", []string{"-config", cfg, "-to", "b@example.net", mixed}, 2, nil, "-from ADDR is required", nil},
		{"no file", []string{"-config", cfg, "-from", "a@example.com", "-to", "b@example.net"}, 2, nil, "exactly one message file", nil},
		{"missing file", []string{"-config", cfg, "-from", "a@example.com", "-to", "b@example.net", filepath.Join(dir, "nope.eml")}, 1, nil, "no such file", nil},
		{"bad policy", []string{"-config", bad, "-from", "a@example.com", "-to", "b@example.net", mixed}, 1, nil, `policies[0].action: want link, keep, reject, quarantine, approve or hold, got "drop"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, append([]string{"policy", "test"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errOut)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notInOut {
				if strings.Contains(out, w) {
					t.Errorf("stdout has %q:\n%s", w, out)
				}
			}
			if tt.wantErr != "" && !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q lacks %q", errOut, tt.wantErr)
			}
		})
	}
	if _, errOut, code := runCLI(t, "policy"); code != 2 || !strings.Contains(errOut, "usage: attachgate policy test") {
		t.Errorf("policy without test: %d %q", code, errOut)
	}
}

// TestServeHoldsAndReleases runs the daemon with quarantine and hold rules:
// the wiring of policies, quarantine, timed release and admin routes.
func TestServeHoldsAndReleases(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	adminAddr := freeAddr(t)
	const token = "policy-e2e-admin-token"
	sum := sha256.Sum256([]byte(token))
	d := startDaemon(t, hop.Addr, fmt.Sprintf(`%squarantine:
  hold_for: "2s"
admin:
  listen: %q
  tokens:
    - {name: ops, sha256: %q, role: admin, networks: ["127.0.0.0/8"]}
`, policyYAML, adminAddr, hex.EncodeToString(sum[:])))

	adminCall := func(method, path string) (int, []byte) {
		req, _ := http.NewRequest(method, "http://"+adminAddr+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	// Reject: a 5xx policy verdict.
	err := d.send("alice@example.com", []string{"bob@example.net"}, multiMail([2]string{"x.exe", "application/octet-stream"}))
	if se, ok := err.(*smtp.SMTPError); !ok || se.Code != 550 || se.Message != "Message refused by policy block-executables" {
		t.Fatalf("exe: %v", err)
	}
	// Quarantine: 250, nothing relayed, listed, released by an admin.
	if err := d.send("alice@example.com", []string{"bob@example.net"}, multiMail([2]string{"budget.docm", "application/octet-stream"})); err != nil {
		t.Fatalf("docm: %v", err)
	}
	if n := len(hop.Messages()); n != 0 {
		t.Fatalf("next hop got %d messages", n)
	}
	code, body := adminCall("GET", "/admin/quarantine")
	var items []struct{ ID, Action string }
	json.Unmarshal(body, &items)
	if code != 200 || len(items) != 1 || items[0].Action != "quarantine" {
		t.Fatalf("list: %d %s", code, body)
	}
	if code, body := adminCall("POST", "/admin/quarantine/"+items[0].ID+"/release"); code != 200 {
		t.Fatalf("release: %d %s", code, body)
	}
	msgs := hop.Messages()
	if len(msgs) != 1 || len(relayedLinks(t, d, msgs[0].Data)) != 1 {
		t.Fatalf("after release: %d messages", len(msgs))
	}
	// Hold: released on its own after hold_for.
	if err := d.send("carol@finance.example.com", []string{"partner@example.org"}, multiMail([2]string{"q3.pdf", "application/pdf"})); err != nil {
		t.Fatalf("finance: %v", err)
	}
	// The sender is told at once (hold notice), the recipient gets the
	// message when the hold ends.
	released := waitMail(t, hop, "partner@example.org")
	if len(released.To) != 1 {
		t.Errorf("released to %v", released.To)
	}
	if n := mailsFor(hop, "carol@finance.example.com"); n != 1 {
		t.Errorf("the sender got %d hold notices, want 1", n)
	}
	types := map[string]int{}
	for _, ev := range exportEvents(t, d) {
		types[fmt.Sprint(ev["type"])]++
	}
	for _, typ := range []string{"mail.held", "mail.released", "mail.rejected", "admin.quarantine.list", "admin.quarantine.release"} {
		if types[typ] == 0 {
			t.Errorf("no %s event", typ)
		}
	}
	if types["mail.held"] != 2 || types["mail.released"] != 2 {
		t.Errorf("events %v", types)
	}
}
