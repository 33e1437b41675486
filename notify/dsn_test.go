package notify

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

const originalHeaders = "Return-Path: <alice@corp.example>\r\n" +
	"Received: from mua.corp.example by mta.corp.example\r\n" +
	"\twith ESMTP id 1234; Tue, 1 Dec 2026 18:00:00 +0900\r\n" +
	"From: Alice <alice@corp.example>\n" + // a bare LF, as some clients send
	"To: bob@example.net, carol@example.org\r\n" +
	"Subject: =?utf-8?b?6KaL56mN5pu4?=\r\n" +
	"X-Raw: 生のヘッダー = 8bit\r\n" +
	"Message-ID: <orig-1@corp.example>\r\n" +
	"\r\n"

// countingReader fails the test's expectations if the body is read: it
// counts every byte handed out.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// endlessBody never ends: reading the whole message would never finish.
type endlessBody struct{}

func (endlessBody) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'A'
		if i%76 == 75 {
			p[i] = '\n'
		}
	}
	return len(p), nil
}

func TestDSNStructure(t *testing.T) {
	ring := newRing(t, t.TempDir())
	c := newComposer(t, "both", ring)
	arrival := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	last := arrival.Add(5 * time.Minute)
	orig := &countingReader{r: io.MultiReader(strings.NewReader(originalHeaders), endlessBody{})}
	refused := RecipientFromReply("bob@example.net", "Bob@Example.NET", &smtp.SMTPError{Code: 550,
		EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user\nhere"}, last)
	delayed := RecipientFromReply("carol@example.org", "", &smtp.SMTPError{Code: 451,
		EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try later"}, last)
	m, err := c.DSN(DSN{To: "alice@corp.example", About: "msg-9", Subject: "見積書", ArrivalDate: arrival,
		Reason: "refused by the next hop at release", Recipients: []DSNRecipient{refused, delayed},
		RetryUntil: arrival.Add(120 * time.Hour), OriginalHeaders: orig})
	if err != nil {
		t.Fatal(err)
	}
	if !m.NullSender || len(m.To) != 1 || m.To[0] != "alice@corp.example" || m.Kind != "dsn" {
		t.Fatalf("DSN envelope: null=%v to=%v kind=%s", m.NullSender, m.To, m.Kind)
	}
	raw := render(t, m)
	if orig.n > len(originalHeaders)+8192 {
		t.Errorf("read %d bytes of the original: more than its header section", orig.n)
	}
	top := parse(t, raw)
	ct, params := top.contentType(t)
	if ct != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %s %v", ct, params)
	}
	if top.header.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("Auto-Submitted = %q", top.header.Get("Auto-Submitted"))
	}
	if len(top.parts) != 3 {
		t.Fatalf("%d parts, want 3", len(top.parts))
	}

	// 1: human-readable, text and HTML, both languages.
	human := top.parts[0]
	if ct, _ := human.contentType(t); ct != "multipart/alternative" || len(human.parts) != 2 {
		t.Fatalf("part 1: %s with %d parts", ct, len(human.parts))
	}
	text := human.parts[0].body
	for _, want := range []string{"could not be delivered", "配送できませんでした", "bob@example.net",
		"550 5.1.1 No such user here", "carol@example.org", "still being retried", "「見積書」",
		"refused by the next hop at release"} {
		if !strings.Contains(text, want) {
			t.Errorf("human-readable text lacks %q:\n%s", want, text)
		}
	}

	// 2: message/delivery-status, field by field.
	st := top.parts[1]
	if ct, _ := st.contentType(t); ct != "message/delivery-status" {
		t.Fatalf("part 2: %s", ct)
	}
	blocks := statusBlocks(t, st.body)
	if len(blocks) != 3 {
		t.Fatalf("%d delivery-status blocks, want 3:\n%s", len(blocks), st.body)
	}
	want := []map[string]string{
		{"Reporting-MTA": "dns; gw.corp.example", "Arrival-Date": "Tue, 01 Dec 2026 09:00:00 +0000"},
		{"Original-Recipient": "rfc822; Bob@Example.NET", "Final-Recipient": "rfc822; bob@example.net",
			"Action": "failed", "Status": "5.1.1", "Diagnostic-Code": "smtp; 550 5.1.1 No such user here",
			"Last-Attempt-Date": "Tue, 01 Dec 2026 09:05:00 +0000"},
		{"Final-Recipient": "rfc822; carol@example.org", "Action": "delayed", "Status": "4.3.0",
			"Diagnostic-Code": "smtp; 451 4.3.0 Try later", "Will-Retry-Until": "Sun, 06 Dec 2026 09:00:00 +0000"},
	}
	for i, fields := range want {
		for k, v := range fields {
			if got := blocks[i].Get(k); got != v {
				t.Errorf("block %d %s = %q, want %q", i+1, k, got, v)
			}
		}
	}
	if blocks[2].Has("Original-Recipient") {
		t.Errorf("Original-Recipient without ORCPT")
	}

	// 3: the original header section, and nothing of the body.
	hp := top.parts[2]
	if ct, _ := hp.contentType(t); ct != "text/rfc822-headers" {
		t.Fatalf("part 3: %s", ct)
	}
	wantHeaders := strings.ReplaceAll(strings.TrimSuffix(originalHeaders, "\r\n"), "example>\n", "example>\r\n")
	if hp.body != wantHeaders {
		t.Errorf("rfc822-headers part =\n%q\nwant\n%q", hp.body, wantHeaders)
	}
}

func TestDSNRules(t *testing.T) {
	ring := newRing(t, t.TempDir())
	c := newComposer(t, "en", ring)
	failed := []DSNRecipient{{Address: "bob@example.net", Action: ActionFailed}}
	tests := []struct {
		name string
		d    DSN
		want error // nil: any error
	}{
		{"null reverse-path gets no DSN", DSN{To: "", Recipients: failed}, ErrNullSender},
		{"no recipients", DSN{To: "alice@corp.example"}, nil},
		{"unknown action", DSN{To: "alice@corp.example", Recipients: []DSNRecipient{{Address: "bob@example.net", Action: "relayed"}}}, nil},
		{"delayed with a permanent status", DSN{To: "alice@corp.example", Recipients: []DSNRecipient{{Address: "bob@example.net", Action: ActionDelayed, Status: "5.1.1"}}}, nil},
		{"bad status", DSN{To: "alice@corp.example", Recipients: []DSNRecipient{{Address: "bob@example.net", Action: ActionFailed, Status: "5.1"}}}, nil},
		{"recipient with a line break", DSN{To: "alice@corp.example", Recipients: []DSNRecipient{{Address: "bob@example.net\r\nX: y", Action: ActionFailed}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.DSN(tt.d)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDSNInternationalAndLongFields(t *testing.T) {
	ring := newRing(t, t.TempDir())
	c := newComposer(t, "ja", ring)
	long := "550 5.7.1 " + strings.Repeat("x", 3000) + " " + strings.Repeat("word ", 400)
	m, err := c.DSN(DSN{To: "alice@corp.example", Recipients: []DSNRecipient{
		{Address: "山田+tag@例え.jp", OriginalRecipient: "山田+tag@例え.jp", Action: ActionFailed, Status: "5.7.1", Diagnostic: long},
	}, OriginalHeaders: strings.NewReader("X-Long: " + strings.Repeat("y", 5000) + "\r\n\r\nbody")})
	if err != nil {
		t.Fatal(err)
	}
	raw := render(t, m) // checks CRLF, 998 and 7-bit
	top := parse(t, raw)
	blocks := statusBlocks(t, top.parts[1].body)
	if got := blocks[1].Get("Final-Recipient"); got != `utf-8; \x{5C71}\x{7530}\x{2B}tag@\x{4F8B}\x{3048}.jp` {
		t.Errorf("Final-Recipient = %q", got)
	}
	diag := strings.Join(strings.Fields(blocks[1].Get("Diagnostic-Code")), " ")
	if !strings.HasPrefix(diag, "smtp; 550 5.7.1 xxx") || !strings.HasSuffix(diag, "word word") {
		t.Errorf("Diagnostic-Code lost text: %.80q...", diag)
	}
	if got := top.parts[2].body; got != "X-Long: "+strings.Repeat("y", 5000)+"\r\n" {
		t.Errorf("long header line not kept whole through quoted-printable (%d bytes)", len(got))
	}
}
