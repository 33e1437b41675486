package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/smtptest"
)

// exportEvents runs `audit export` for today and returns the events.
func exportEvents(t *testing.T, d *daemon) []map[string]any {
	t.Helper()
	today := time.Now().In(mustZone(t, "Asia/Tokyo")).Format("2006-01-02")
	out, errOut, code := runCLI(t, "audit", "export", "-config", d.config, "-from", today, "-to", today, "-format", "jsonl")
	if code != 0 {
		t.Fatalf("audit export: exit %d: %s", code, errOut)
	}
	var events []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		events = append(events, ev)
	}
	return events
}

// TestAuditCoversEveryFlow drives real flows through the daemon and checks
// that each produced its documented audit event, that events about files
// name the file and its link, and that the chain verifies afterwards.
func TestAuditCoversEveryFlow(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	adminAddr := freeAddr(t)
	const token = "events-test-admin-token"
	sum := sha256.Sum256([]byte(token))
	d := startDaemon(t, hop.Addr, fmt.Sprintf(`admin:
  listen: %q
  tokens:
    - name: auditor-jane
      sha256: %q
      role: admin
      networks: ["127.0.0.0/8"]
`, adminAddr, hex.EncodeToString(sum[:])))

	// mail.received, file.stored, link.created, mail.relayed
	content := []byte("quarterly numbers")
	if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("q3.xlsx", content)); err != nil {
		t.Fatal(err)
	}
	link := relayedLinks(t, d, hop.Messages()[0].Data)[0]
	// link.viewed, download.ok
	if resp, data := download(t, link); resp.StatusCode != 200 || !bytes.Equal(data, content) {
		t.Fatalf("download: %s", resp.Status)
	}
	// download.denied (csrf): a POST without the form's token.
	resp, err := http.PostForm(link, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST without CSRF token: %s", resp.Status)
	}
	// mail.rejected and mail.deferred: the next hop's own verdicts.
	hop.SetBehaviour(smtptest.Behaviour{DataReply: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Policy says no"}})
	d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("no.pdf", []byte("x")))
	hop.SetBehaviour(smtptest.Behaviour{DataReply: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try later"}})
	d.send("alice@example.com", []string{"bob@example.net"}, []byte("Subject: later\r\n\r\nx\r\n"))
	hop.SetBehaviour(smtptest.Behaviour{})

	// admin.link.revoke and link.revoked, then download.denied (revoked).
	var linkID string
	for _, ev := range exportEvents(t, d) {
		if ev["type"] == "link.created" {
			linkID = fmt.Sprint(ev["link_id"])
			break
		}
	}
	admin := func(method, path, bearer string) int {
		req, _ := http.NewRequest(method, "http://"+adminAddr+path, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := admin(http.MethodPost, "/admin/links/"+linkID+"/revoke", token); code != 200 {
		t.Fatalf("admin revoke: %d", code)
	}
	if code := admin(http.MethodGet, "/admin/audit?from=2026-01-01&to=2026-01-01&format=csv", "wrong-token"); code != 401 {
		t.Fatalf("admin with a wrong token: %d", code)
	}
	if code := admin(http.MethodGet, "/admin/audit?from=2026-01-01&to=2026-01-01&format=csv", token); code != 200 {
		t.Fatalf("admin export: %d", code)
	}
	resp, err = http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("revoked link: %s", resp.Status)
	}

	events := exportEvents(t, d)
	byType := map[string][]map[string]any{}
	var lastSeq float64
	for _, ev := range events {
		typ := fmt.Sprint(ev["type"])
		byType[typ] = append(byType[typ], ev)
		seq, _ := ev["seq"].(float64)
		if seq <= lastSeq {
			t.Errorf("seq %v after %v: not increasing", seq, lastSeq)
		}
		lastSeq = seq
	}
	for _, typ := range []string{"mail.received", "file.stored", "link.created", "mail.relayed", "link.viewed",
		"download.ok", "download.denied", "mail.rejected", "mail.deferred", "admin.link.revoke", "link.revoked",
		"admin.denied", "admin.audit.export"} {
		if len(byType[typ]) == 0 {
			t.Errorf("no %s event after its flow", typ)
		}
	}
	for _, typ := range []string{"file.stored", "link.created", "link.viewed", "download.ok", "link.revoked"} {
		for _, ev := range byType[typ] {
			if ev["file_name"] == nil || ev["link_id"] == nil {
				t.Errorf("%s event lacks file name or link id: %v", typ, ev)
			}
		}
	}
	reasons := map[string]bool{}
	for _, ev := range byType["download.denied"] {
		reasons[fmt.Sprint(ev["reason"])] = true
		if ev["client_addr"] == nil || ev["user_agent"] == nil {
			t.Errorf("download.denied lacks client or agent: %v", ev)
		}
	}
	if !reasons["csrf"] {
		t.Errorf("download.denied reasons %v, want csrf", reasons)
	}
	if r := byType["mail.rejected"]; len(r) > 0 && !strings.Contains(fmt.Sprint(r[0]["reply"]), "554 5.7.1 Policy says no") {
		t.Errorf("mail.rejected does not carry the next hop's reply: %v", r[0])
	}
	if r := byType["admin.link.revoke"]; len(r) > 0 && r[0]["actor"] != "admin:auditor-jane" {
		t.Errorf("admin action actor %v, want admin:auditor-jane", r[0]["actor"])
	}
	for _, ev := range events {
		for k, v := range ev {
			if s, ok := v.(string); ok && strings.Contains(link, s) && len(s) > 20 && k != "client_addr" {
				t.Errorf("event %v carries the link token in %s", ev["type"], k)
			}
		}
	}
	out, errOut, code := runCLI(t, "audit", "verify", "-config", d.config)
	if code != 0 {
		t.Fatalf("audit verify: exit %d\n%s%s", code, out, errOut)
	}
}
