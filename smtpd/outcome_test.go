package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/smtptest"
)

// auditEvents returns the gateway's audit log as exported (JSON lines).
func (g *gateway) auditEvents() []map[string]any {
	g.t.Helper()
	day := time.Now().UTC().Format("2006-01-02")
	q, err := audit.ParseDateRange(day, day, time.UTC)
	if err != nil {
		g.t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := g.audit.Export(context.Background(), q, &buf, "jsonl", false); err != nil {
		g.t.Fatal(err)
	}
	var events []map[string]any
	sc := bufio.NewScanner(&buf)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			g.t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		events = append(events, e)
	}
	return events
}

// deepMIME is a message nested deeper than the MIME depth limit.
func deepMIME() []byte {
	var b strings.Builder
	b.WriteString("Subject: deep\r\nMIME-Version: 1.0\r\n")
	const depth = 100
	for i := 0; i < depth; i++ {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n", i, i)
	}
	b.WriteString("Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=x.bin\r\n\r\nxx\r\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return []byte(b.String())
}

// TestEveryExitRecordsAnOutcome: whatever ends a message, the audit log
// says how, with the reply the client got, and nothing of it stays stored.
func TestEveryExitRecordsAnOutcome(t *testing.T) {
	withFile := mailWithAttachment("outcome", "body", "a.pdf", bytes.Repeat([]byte("pdf "), 4<<10))
	for _, tt := range []struct {
		name      string
		hop       smtptest.Behaviour
		msg       []byte
		wantType  audit.EventType
		wantReply string
	}{
		{"too large", smtptest.Behaviour{}, mailWithAttachment("big", "body", "big.bin", bytes.Repeat([]byte("y"), 100<<10)),
			audit.TypeMailRejected, "552 5.3.4"},
		{"too complex", smtptest.Behaviour{}, deepMIME(), audit.TypeMailRejected, "554 5.6.0 Message structure too complex"},
		{"next hop refuses", smtptest.Behaviour{DataReply: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Spam"}},
			withFile, audit.TypeMailRejected, "554 5.7.1 Spam"},
		{"next hop defers", smtptest.Behaviour{DataReply: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}},
			withFile, audit.TypeMailDeferred, "451 4.3.0 later"},
		{"next hop lost", smtptest.Behaviour{DropAtDataEnd: true}, withFile, audit.TypeMailDeferred, "next hop end of DATA"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hop := smtptest.NewServer(t, tt.hop)
			gw := startGateway(t, hop.Addr, withMaxMessageBytes(64<<10))
			if err := gw.send("a@example.com", []string{"b@example.net"}, tt.msg); err == nil {
				t.Fatal("message accepted")
			}
			var outcomes []map[string]any
			for _, e := range gw.auditEvents() {
				switch audit.EventType(fmt.Sprint(e["type"])) {
				case audit.TypeMailRejected, audit.TypeMailDeferred, audit.TypeMailRelayed:
					outcomes = append(outcomes, e)
				}
			}
			if len(outcomes) != 1 {
				t.Fatalf("outcome events: %v, want exactly one", outcomes)
			}
			e := outcomes[0]
			if e["type"] != string(tt.wantType) || !strings.HasPrefix(fmt.Sprint(e["reply"]), tt.wantReply) {
				t.Errorf("outcome %v %q, want %s %q...", e["type"], e["reply"], tt.wantType, tt.wantReply)
			}
			if e["message_id"] == "" || e["sender"] != "a@example.com" {
				t.Errorf("outcome does not name the message: %v", e)
			}
			gw.assertNoLeftovers()
			if n := fileCount(t, filepath.Join(gw.dir, "blobs")); n != 0 {
				t.Errorf("%d blobs left after a failed message", n)
			}
		})
	}
}
