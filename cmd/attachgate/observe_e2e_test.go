package main

// End-to-end tests of what an operator watches: /metrics and /readyz on the
// admin listener, and the one log line per message, read from the real
// daemon's output after real SMTP conversations.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/attachgate/attachgate/smtptest"
)

// messageLogKeys are the keys every per-message log line carries
// (README, "Logs").
var messageLogKeys = []string{"id", "message_id", "sender", "rcpts", "outcome", "reply", "duration_ms", "files", "kept", "size"}

// getURL fetches url and returns status and body.
func getURL(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitUntil polls cond with a generous deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 60s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrape reads /metrics and parses the text format.
func scrape(t *testing.T, adminURL string) map[string]*dto.MetricFamily {
	t.Helper()
	status, body := getURL(t, adminURL+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics: %d %s", status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// series is one series' value (a histogram's sample count); ok is false
// when it is missing.
func series(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// jsonLogLines returns the daemon's JSON log lines whose msg is msg.
func jsonLogLines(t *testing.T, d *daemon, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	text := d.log.String()
	// A line still arriving through the pipe is left for the next look.
	text = text[:strings.LastIndex(text, "\n")+1]
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log.format json wrote a line that is not JSON: %q", line)
		}
		if d := duplicateKey(jsonKeys(t, line)); d != "" {
			t.Fatalf("log.format json wrote the key %q twice: %s", d, line)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func mailWithMessageID(id string, raw []byte) []byte {
	return regexp.MustCompile(`Message-ID: <[^>]*>`).ReplaceAll(raw, []byte("Message-ID: "+id))
}

// TestMetricsLogsAndReadiness relays, refuses and defers real mail through
// the daemon, downloads a file, and then reads what an operator sees: the
// Prometheus scrape, /readyz, and one JSON log line per message with the
// documented keys and no secrets.
func TestMetricsLogsAndReadiness(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	adminAddr := freeAddr(t)
	d := startDaemon(t, hop.Addr, fmt.Sprintf(`admin:
  listen: %q
  metrics_networks: ["127.0.0.0/8"]
log:
  format: json
`, adminAddr))
	adminURL := "http://" + adminAddr
	waitUntil(t, "admin listener", func() bool {
		resp, err := http.Get(adminURL + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})

	content := []byte("見積書の中身 — quarterly figures")
	relayed := mailWithMessageID("<relayed-1@example.com>", mailWithAttachment("見積書.pdf", content))
	if err := d.send("alice@example.com", []string{"bob@example.net"}, relayed); err != nil {
		t.Fatal(err)
	}
	link := relayedLinks(t, d, hop.Messages()[0].Data)[0]
	if resp, data := download(t, link); resp.StatusCode != 200 || !bytes.Equal(data, content) {
		t.Fatalf("download: %s", resp.Status)
	}
	hop.SetBehaviour(smtptest.Behaviour{DataReply: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Policy says no"}})
	if err := d.send("alice@example.com", []string{"bob@example.net", "carol@example.org"},
		mailWithMessageID("<rejected-1@example.com>", mailWithAttachment("a.pdf", content))); err == nil {
		t.Fatal("the next hop's 554 was not passed on")
	}
	hop.SetBehaviour(smtptest.Behaviour{DataReply: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try later"}})
	if err := d.send("alice@example.com", []string{"bob@example.net"},
		mailWithMessageID("<deferred-1@example.com>", mailWithAttachment("b.pdf", content))); err == nil {
		t.Fatal("the next hop's 451 was not passed on")
	}

	// The scrape. Sessions close as the clients quit; wait for the gauge.
	var fams map[string]*dto.MetricFamily
	waitUntil(t, "smtp_sessions back to 0", func() bool {
		fams = scrape(t, adminURL)
		v, ok := series(fams, "attachgate_smtp_sessions")
		return ok && v == 0
	})
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"attachgate_messages_total", []string{"outcome", "relayed"}, 1},
		{"attachgate_messages_total", []string{"outcome", "rejected"}, 1},
		{"attachgate_messages_total", []string{"outcome", "deferred"}, 1},
		{"attachgate_messages_total", []string{"outcome", "held"}, 0},
		{"attachgate_message_duration_seconds", []string{"outcome", "relayed"}, 1},
		{"attachgate_attachments_total", []string{"action", "linked"}, 1},
		{"attachgate_attachments_total", []string{"action", "kept"}, 0},
		// Every attempt stored its file before relaying (and rolled back
		// after a refusal): three times the bytes went into the vault.
		{"attachgate_stored_bytes_total", nil, float64(3 * len(content))},
		{"attachgate_downloads_total", []string{"outcome", "ok", "reason", ""}, 1},
		{"attachgate_audit_events_total", []string{"type", "mail.relayed"}, 1},
		{"attachgate_audit_events_total", []string{"type", "mail.rejected"}, 1},
		{"attachgate_audit_events_total", []string{"type", "mail.deferred"}, 1},
		{"attachgate_next_hop_latency_seconds", []string{"op", "end_of_data"}, 3},
		{"attachgate_next_hop_latency_seconds", []string{"op", "rcpt"}, 4},
		{"attachgate_next_hop_errors_total", []string{"op", "connect"}, 0},
		{"attachgate_audit_errors_total", nil, 0},
	}
	for _, c := range checks {
		got, ok := series(fams, c.name, c.labels...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	for _, name := range []string{"attachgate_storage_free_bytes", "go_goroutines", "process_resident_memory_bytes"} {
		if v, ok := series(fams, name); !ok || v <= 0 {
			t.Errorf("%s = %v (present %v), want a positive value", name, v, ok)
		}
	}
	if v, ok := series(fams, "attachgate_held_messages", "state", "quarantined"); !ok || v != 0 {
		t.Errorf("held_messages{quarantined} = %v (present %v), want 0", v, ok)
	}

	if status, body := getURL(t, adminURL+"/readyz"); status != 200 || body != "store: ok\nnext_hop: ok\n" {
		t.Errorf("/readyz = %d %q, want 200 with store and next hop ok", status, body)
	}

	// One line per message, with the fixed keys.
	// The child's output arrives through a pipe: wait for the lines.
	var lines []map[string]any
	waitUntil(t, "three message lines", func() bool {
		lines = jsonLogLines(t, d, "message")
		return len(lines) >= 3
	})
	if len(lines) != 3 {
		t.Fatalf("%d message log lines for 3 messages:\n%s", len(lines), d.log.String())
	}
	for _, l := range lines {
		for _, k := range messageLogKeys {
			if _, ok := l[k]; !ok {
				t.Errorf("message log line lacks %q: %v", k, l)
			}
		}
	}
	want := []struct {
		outcome, messageID, reply string
		rcpts, files              float64
		level                     string
	}{
		{"relayed", "<relayed-1@example.com>", "250 ", 1, 1, "INFO"},
		{"rejected", "<rejected-1@example.com>", "554 5.7.1 Policy says no", 2, 1, "INFO"},
		{"deferred", "<deferred-1@example.com>", "451 4.3.0 Try later", 1, 1, "WARN"},
	}
	for i, w := range want {
		l := lines[i]
		if l["outcome"] != w.outcome || l["message_id"] != w.messageID || l["rcpts"] != w.rcpts ||
			l["files"] != w.files || l["sender"] != "alice@example.com" || l["level"] != w.level ||
			!strings.HasPrefix(l["reply"].(string), w.reply) {
			t.Errorf("line %d = %v, want outcome %s, message_id %s, reply %q..., rcpts %v, files %v, level %s",
				i, l, w.outcome, w.messageID, w.reply, w.rcpts, w.files, w.level)
		}
		if id, _ := l["id"].(string); id == "" {
			t.Errorf("line %d has no id", i)
		}
		if size, _ := l["size"].(float64); size < float64(len(content)) {
			t.Errorf("line %d size = %v, want at least the attachment's %d bytes", i, size, len(content))
		}
	}
	// No secrets: the link's token appears nowhere in the log, nor do the
	// recipients' addresses.
	token := link[strings.LastIndex(link, "/")+1:]
	logText := d.log.String()
	for _, secret := range []string{token, "bob@example.net", "carol@example.org"} {
		if strings.Contains(logText, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
}

// TestMessageLogText: with the default log.format text, the same keys in
// key=value form, one line per message.
func TestMessageLogText(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, "")
	if err := d.send("alice@example.com", []string{"bob@example.net"},
		mailWithMessageID("<text-1@example.com>", mailWithAttachment("x.pdf", []byte("x")))); err != nil {
		t.Fatal(err)
	}
	var lines []string
	waitUntil(t, "the message line", func() bool {
		lines = lines[:0]
		for _, line := range strings.Split(d.log.String(), "\n") {
			if strings.Contains(line, " msg=message ") {
				lines = append(lines, line)
			}
		}
		return len(lines) >= 1
	})
	if len(lines) != 1 {
		t.Fatalf("%d message lines, want 1:\n%s", len(lines), d.log.String())
	}
	for _, k := range messageLogKeys {
		if !strings.Contains(lines[0], " "+k+"=") {
			t.Errorf("text line lacks %s=: %s", k, lines[0])
		}
	}
	for _, kv := range []string{"outcome=relayed", "message_id=<text-1@example.com>", "sender=alice@example.com", "rcpts=1", "files=1"} {
		if !strings.Contains(lines[0], " "+kv) {
			t.Errorf("text line lacks %s: %s", kv, lines[0])
		}
	}
}

// TestReadyzNextHopDown: with a next hop that hangs up without a greeting
// the gateway is not ready, and says which check failed. (The port stays
// bound by the test, so no other listener of the test can take it.)
func TestReadyzNextHopDown(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	go func() {
		for {
			c, err := dead.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	adminAddr := freeAddr(t)
	d := startDaemon(t, dead.Addr().String(), fmt.Sprintf(`admin:
  listen: %q
  metrics_networks: ["127.0.0.1"]
`, adminAddr))
	var status int
	var body string
	waitUntil(t, "admin listener", func() bool {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		status, body = resp.StatusCode, string(b)
		return true
	})
	if status != http.StatusServiceUnavailable || body != "store: ok\nnext_hop: unavailable\n" {
		t.Fatalf("/readyz = %d %q, want 503 naming the next hop", status, body)
	}
	// The child's output arrives through a pipe: wait for it.
	waitUntil(t, "the failed check in the log", func() bool {
		return strings.Contains(d.log.String(), `msg="admin: readiness check failed" component=admin check=next_hop`)
	})
}

// TestMetricsHeldAndKept drives the policies: a kept attachment, a message
// quarantined and one held for a timed release. The scrape shows them by
// state, read from the real quarantine, and the log line of a held message
// says held with no next-hop reply.
func TestMetricsHeldAndKept(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	adminAddr := freeAddr(t)
	d := startDaemon(t, hop.Addr, fmt.Sprintf(`admin:
  listen: %q
  metrics_networks: ["127.0.0.0/8"]
log:
  format: json
policies:
  - name: keep-text
    match: {extensions: [".txt"]}
    action: keep
  - name: quarantine-zip
    match: {extensions: [".zip"]}
    action: quarantine
  - name: hold-doc
    match: {extensions: [".doc"]}
    action: hold
quarantine:
  hold_for: "1h"
`, adminAddr))
	adminURL := "http://" + adminAddr
	for _, name := range []string{"notes.txt", "archive.zip", "letter.doc"} {
		if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment(name, []byte("content of "+name))); err != nil {
			t.Fatalf("send %s: %v", name, err)
		}
	}
	if n := len(hop.Messages()); n != 1 {
		t.Fatalf("next hop got %d messages, want only the one with the kept file", n)
	}
	var fams map[string]*dto.MetricFamily
	waitUntil(t, "admin listener", func() bool {
		resp, err := http.Get(adminURL + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	fams = scrape(t, adminURL)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"attachgate_messages_total", []string{"outcome", "relayed"}, 1},
		{"attachgate_messages_total", []string{"outcome", "held"}, 2},
		{"attachgate_attachments_total", []string{"action", "kept"}, 1},
		{"attachgate_attachments_total", []string{"action", "linked"}, 0},
		{"attachgate_held_messages", []string{"state", "quarantined"}, 1},
		{"attachgate_held_messages", []string{"state", "holding"}, 1},
		{"attachgate_held_messages", []string{"state", "retrying"}, 0},
		{"attachgate_audit_events_total", []string{"type", "mail.held"}, 2},
	} {
		if got, ok := series(fams, c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	var lines []map[string]any
	waitUntil(t, "three message lines", func() bool {
		lines = jsonLogLines(t, d, "message")
		return len(lines) >= 3
	})
	want := []struct {
		outcome     string
		files, kept float64
	}{{"relayed", 0, 1}, {"held", 0, 0}, {"held", 0, 0}}
	for i, w := range want {
		l := lines[i]
		if l["outcome"] != w.outcome || l["files"] != w.files || l["kept"] != w.kept {
			t.Errorf("line %d = %v, want outcome %s, files %v, kept %v", i, l, w.outcome, w.files, w.kept)
		}
	}
	for _, l := range lines[1:] {
		if l["reply"] != "" {
			t.Errorf("a held message's line has a next-hop reply: %v", l)
		}
	}
}
