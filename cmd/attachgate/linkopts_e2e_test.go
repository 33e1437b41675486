package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/store"
)

// linkOptsConfig is a rule with link options for mail leaving corp.example
// and a plain rule for mail inside it.
const linkOptsConfig = `policies:
  - name: external
    match: {recipient_domains_not: ["corp.example"]}
    action: link
    link:
      expiry: 72h
      max_downloads: 3
      verify: recipient-code
      notify_sender: receipt
      language: en
  - name: internal
    action: link
`

var (
	pageTokenRE   = regexp.MustCompile(`/m/([A-Za-z0-9_-]{43})`)
	manageTokenRE = regexp.MustCompile(`/s/([A-Za-z0-9_-]{43})`)
	fileTokenRE   = regexp.MustCompile(`/d/([A-Za-z0-9_-]{43})`)
)

// openStore opens the daemon's SQLite database beside it (WAL: the daemon
// keeps writing).
func openStore(t *testing.T, d *daemon) *store.SQLite {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(d.dir, "data", "attachgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// receipts are the messages the next hop got for rcpt that are not the
// relayed mail itself (the gateway's own mail to the sender).
func receiptsTo(hop *smtptest.Server, rcpt string) []smtptest.Message {
	var out []smtptest.Message
	for _, m := range hop.Messages() {
		// Receipts only: a held message's sender also gets a "held" notice.
		if len(m.To) == 1 && m.To[0] == rcpt && bytes.Contains(m.Data, []byte("X-Attachgate-Notice: receipt;")) {
			out = append(out, m)
		}
	}
	return out
}

// TestLinkOptionsAndReceipt: a rule's link options reach the store (expiry
// 72h, 3 downloads, recipient-code, receipt, en), the relayed notice lists
// the message page first, and the sender's receipt carries a manage link
// whose token is the message's manage token — never the relayed mail.
func TestLinkOptionsAndReceipt(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, linkOptsConfig)
	st := openStore(t, d)
	ctx := context.Background()

	msg := mailWithAttachment("report.pdf", []byte("quarterly figures"))
	msg = bytes.Replace(msg, []byte("Subject: files"), []byte("Subject: =?UTF-8?B?5aCx5ZGK5pu4?= Q4"), 1)
	if err := d.send("alice@corp.example", []string{"bob@example.net"}, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	msgs := hop.Messages()
	if len(msgs) != 1 {
		t.Fatalf("next hop got %d messages, want the relayed one", len(msgs))
	}
	relayed := msgs[0].Data
	plain := decodedText(t, relayed, "text/plain")
	page := pageTokenRE.FindStringSubmatchIndex(plain)
	file := fileTokenRE.FindStringSubmatchIndex(plain)
	if page == nil || file == nil || page[0] > file[0] {
		t.Fatalf("want the message page /m/ listed before the file's /d/ link:\n%s", plain)
	}
	if !regexp.MustCompile(`All files of this message:\r?\n  ` + regexp.QuoteMeta(d.linkURL) + `/m/`).MatchString(plain) {
		t.Errorf("the notice does not introduce the message page under links.base_url:\n%s", plain)
	}
	if strings.Contains(plain, "添付ファイル") {
		t.Errorf("rule language en, yet the notice has Japanese:\n%s", plain)
	}
	if bytes.Contains(relayed, []byte("/s/")) {
		t.Fatalf("the relayed mail carries a manage link:\n%s", relayed)
	}

	fileToken := plain[file[2]:file[3]]
	lv, err := st.LinkByTokenHash(ctx, store.HashToken(fileToken))
	if err != nil {
		t.Fatal(err)
	}
	if got := lv.Link.ExpiresAt.Sub(lv.Link.CreatedAt.Truncate(time.Second)); got != 72*time.Hour {
		t.Errorf("link expires %v after creation, want the rule's 72h", got)
	}
	if got := lv.File.ExpiresAt.Sub(lv.File.CreatedAt.Truncate(time.Second)); got != 72*time.Hour {
		t.Errorf("file expires %v after creation, want the rule's 72h", got)
	}
	if lv.Link.MaxDownloads != 3 {
		t.Errorf("link max_downloads = %d, want the rule's 3", lv.Link.MaxDownloads)
	}
	m := lv.Message
	if m.Subject != "報告書 Q4" || m.Lang != "en" || m.Verify != store.VerifyRecipientCode || m.NotifySender != store.NotifyReceipt {
		t.Errorf("message: subject %q lang %q verify %q notify %q; want 報告書 Q4, en, recipient-code, receipt",
			m.Subject, m.Lang, m.Verify, m.NotifySender)
	}
	pv, err := st.MessageByTokenHash(ctx, store.PageToken, store.HashToken(plain[page[2]:page[3]]))
	if err != nil || pv.Message.ID != m.ID {
		t.Fatalf("the notice's message page token does not find the message: %v", err)
	}

	waitFor(t, "the sender's receipt", func() bool { return len(receiptsTo(hop, "alice@corp.example")) == 1 })
	rc := receiptsTo(hop, "alice@corp.example")[0]
	if rc.From != "" {
		t.Errorf("receipt sent with MAIL FROM <%s>, want the null return path", rc.From)
	}
	text := decodedText(t, rc.Data, "text/plain")
	for _, want := range []string{"報告書 Q4", "bob@example.net", "report.pdf", lv.File.SHA256, "17 bytes"} {
		if !strings.Contains(text, want) {
			t.Errorf("receipt lacks %q:\n%s", want, text)
		}
	}
	sm := manageTokenRE.FindStringSubmatch(text)
	if sm == nil || !strings.Contains(text, d.linkURL+"/s/"+sm[1]) {
		t.Fatalf("receipt has no manage link under links.base_url:\n%s", text)
	}
	mv, err := st.MessageByTokenHash(ctx, store.ManageToken, store.HashToken(sm[1]))
	if err != nil || mv.Message.ID != m.ID || !bytes.Equal(mv.Message.ManageTokenHash, store.HashToken(sm[1])) {
		t.Fatalf("the receipt's manage token is not the message's: %v", err)
	}
	if bytes.Contains(rc.Data, []byte(plain[page[2]:page[3]])) || bytes.Contains(rc.Data, []byte(fileToken)) {
		t.Errorf("the receipt carries a recipient's token")
	}

	// A mail inside corp.example: the plain rule, links.* defaults, no
	// manage token, no receipt (checked after the next receipt below).
	if err := d.send("alice@corp.example", []string{"carol@corp.example"}, mailWithAttachment("memo.pdf", []byte("memo"))); err != nil {
		t.Fatal(err)
	}
	internal := hop.Messages()[len(hop.Messages())-1]
	ip := decodedText(t, internal.Data, "text/plain")
	it := fileTokenRE.FindStringSubmatch(ip)
	if it == nil || !pageTokenRE.MatchString(ip) {
		t.Fatalf("internal mail: want a message page and a file link:\n%s", ip)
	}
	iv, err := st.LinkByTokenHash(ctx, store.HashToken(it[1]))
	if err != nil {
		t.Fatal(err)
	}
	if got := iv.Link.ExpiresAt.Sub(iv.Link.CreatedAt.Truncate(time.Second)); got != time.Hour || iv.Link.MaxDownloads != 0 {
		t.Errorf("internal link: expiry %v, max_downloads %d; want links.default_expiry 1h and unlimited", got, iv.Link.MaxDownloads)
	}
	if iv.Message.ManageTokenHash != nil || iv.Message.PageTokenHash == nil || iv.Message.NotifySender != store.NotifyNone ||
		iv.Message.Verify != store.VerifyNone || iv.Message.Lang != "both" {
		t.Errorf("internal message: %+v; want a page token, no manage token, no notice, no verification, links.language", iv.Message)
	}
}

// TestNoReceiptForRolledBackOrBounce: a message the next hop refuses is
// rolled back and its sender gets no receipt; a bounce (MAIL FROM <>) gets
// none either. The queue keeps order, so once the receipt of a later good
// message arrived, none for the earlier ones is coming.
func TestNoReceiptForRolledBackOrBounce(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, linkOptsConfig)

	hop.SetBehaviour(smtptest.Behaviour{DataReply: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "no"}})
	if err := d.send("refused@corp.example", []string{"bob@example.net"}, mailWithAttachment("a.pdf", []byte("a"))); err == nil {
		t.Fatal("the next hop refused the mail, yet the client got 250")
	}
	hop.SetBehaviour(smtptest.Behaviour{})
	if err := d.send("", []string{"bob@example.net"}, mailWithAttachment("b.pdf", []byte("b"))); err != nil {
		t.Fatalf("bounce: %v", err)
	}
	if err := d.send("alice@corp.example", []string{"bob@example.net"}, mailWithAttachment("c.pdf", []byte("c"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the good message's receipt", func() bool { return len(receiptsTo(hop, "alice@corp.example")) == 1 })
	for _, m := range hop.Messages() {
		if bytes.Contains(m.Data, []byte("Auto-Submitted: auto-generated")) && (len(m.To) != 1 || m.To[0] != "alice@corp.example") {
			t.Errorf("a receipt went to %v", m.To)
		}
	}
	if n := len(receiptsTo(hop, "refused@corp.example")); n != 0 {
		t.Errorf("%d receipts for a rolled-back message", n)
	}
	// No notice was even tried for the others: neither sent nor failed
	// (the next hop refused DATA while the first message was relayed, so
	// a receipt queued for it could have been refused, not delivered).
	waitFor(t, "notice.sent for alice", func() bool {
		for _, ev := range exportEvents(t, d) {
			if ev["type"] == "notice.sent" {
				return true
			}
		}
		return false
	})
	for _, ev := range exportEvents(t, d) {
		if ev["type"] == "notice.sent" || ev["type"] == "notice.failed" {
			if rc, _ := ev["recipients"].([]any); len(rc) != 1 || rc[0] != "alice@corp.example" {
				t.Errorf("%s to %v", ev["type"], ev["recipients"])
			}
		}
	}
}

// TestReceiptFailureLeavesMailRelayed: the next hop refuses the receipt's
// recipient; the mail it is about stays relayed (250 to the client, its
// links work) and notice.failed is audited.
func TestReceiptFailureLeavesMailRelayed(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{RejectRcpt: map[string]*smtp.SMTPError{
		"alice@corp.example": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}}})
	// Without recipient verification: this test downloads as a bearer
	// of the link (verification has its own tests).
	d := startDaemon(t, hop.Addr, strings.Replace(linkOptsConfig, "      verify: recipient-code\n", "", 1))
	content := []byte("figures for bob")
	if err := d.send("alice@corp.example", []string{"bob@example.net"}, mailWithAttachment("r.pdf", content)); err != nil {
		t.Fatalf("the mail was not relayed: %v", err)
	}
	waitFor(t, "notice.failed", func() bool {
		for _, ev := range exportEvents(t, d) {
			if ev["type"] == "notice.failed" {
				return true
			}
		}
		return false
	})
	msgs := hop.Messages()
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "bob@example.net" {
		t.Fatalf("next hop messages: %d, want the relayed mail only", len(msgs))
	}
	links := relayedLinks(t, d, msgs[0].Data)
	if len(links) != 1 {
		t.Fatalf("links: %v", links)
	}
	resp, data := download(t, links[0])
	if resp.StatusCode != 200 || !bytes.Equal(data, content) {
		t.Fatalf("download after a failed receipt: %s", resp.Status)
	}
	var relayed, rolledBack bool
	for _, ev := range exportEvents(t, d) {
		switch ev["type"] {
		case "mail.relayed":
			relayed = true
		case "mail.deferred", "mail.rejected":
			rolledBack = true
		}
	}
	if !relayed || rolledBack {
		t.Errorf("audit: relayed %v, rolled back %v; want relayed only", relayed, rolledBack)
	}
}

// TestReceiptSubjectCannotInjectHeaders: a Subject whose encoded words
// decode to a line break and a Bcc field puts no header and no recipient
// into the sender's receipt; the receipt goes to the envelope sender, not
// to the From header's address.
func TestReceiptSubjectCannotInjectHeaders(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, linkOptsConfig)
	evil := "=?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte("報告書\r\nBcc: evil@example.org\r\n\r\nbody")) + "?="
	msg := mailWithAttachment("r.pdf", []byte("x"))
	msg = bytes.Replace(msg, []byte("Subject: files"), []byte("Subject: "+evil), 1)
	msg = bytes.Replace(msg, []byte("From: alice@example.com"), []byte("From: mallory@evil.example"), 1)
	if err := d.send("alice@corp.example", []string{"bob@example.net"}, msg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the receipt", func() bool { return len(receiptsTo(hop, "alice@corp.example")) == 1 })
	for _, m := range hop.Messages() {
		for _, rc := range m.To {
			if rc != "bob@example.net" && rc != "alice@corp.example" {
				t.Errorf("mail went to %s", rc)
			}
		}
	}
	raw := receiptsTo(hop, "alice@corp.example")[0].Data
	header := raw[:bytes.Index(raw, []byte("\r\n\r\n"))]
	for _, line := range strings.Split(string(header), "\r\n") {
		if strings.HasPrefix(strings.ToLower(line), "bcc:") {
			t.Errorf("receipt header has %q", line)
		}
	}
	if !bytes.Contains(header, []byte("\r\nTo: <alice@corp.example>")) && !bytes.Contains(header, []byte("\r\nTo: alice@corp.example")) {
		t.Errorf("receipt To is not the envelope sender:\n%s", header)
	}
}

// TestHeldMessageGetsItsRuleOptionsOnRelease: a hold rule's link options
// apply to the links made when the held message goes out, and the sender's
// receipt follows that release (not the hold).
func TestHeldMessageGetsItsRuleOptionsOnRelease(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, `policies:
  - name: hold-external
    match: {recipient_domains_not: ["corp.example"]}
    action: hold
    link:
      expiry: 48h
      max_downloads: 2
      notify_sender: receipt
quarantine:
  hold_for: "2s"
`)
	if err := d.send("alice@corp.example", []string{"bob@example.net"}, mailWithAttachment("h.pdf", []byte("held"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the released mail and its receipt", func() bool {
		// The held notice, the released mail and its receipt.
		return len(hop.Messages()) == 3 && len(receiptsTo(hop, "alice@corp.example")) == 1
	})
	var relayed []byte
	for _, m := range hop.Messages() {
		if m.To[0] == "bob@example.net" {
			relayed = m.Data
		}
	}
	tok := fileTokenRE.FindStringSubmatch(decodedText(t, relayed, "text/plain"))
	if tok == nil {
		t.Fatal("released mail has no link")
	}
	lv, err := openStore(t, d).LinkByTokenHash(context.Background(), store.HashToken(tok[1]))
	if err != nil {
		t.Fatal(err)
	}
	if got := lv.Link.ExpiresAt.Sub(lv.Link.CreatedAt.Truncate(time.Second)); got != 48*time.Hour || lv.Link.MaxDownloads != 2 {
		t.Errorf("released link: expiry %v, max_downloads %d; want the hold rule's 48h and 2", got, lv.Link.MaxDownloads)
	}
	sm := manageTokenRE.FindStringSubmatch(decodedText(t, receiptsTo(hop, "alice@corp.example")[0].Data, "text/plain"))
	if sm == nil || !bytes.Equal(lv.Message.ManageTokenHash, store.HashToken(sm[1])) {
		t.Errorf("the receipt's manage token is not the released message's")
	}
}
