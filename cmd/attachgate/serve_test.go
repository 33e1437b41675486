package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/smtptest"
)

func mailWithAttachment(name string, content []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: files\r\nMessage-ID: <e2e-%d@example.com>\r\nMIME-Version: 1.0\r\n", time.Now().UnixNano())
	b.WriteString("Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease find the file attached.\r\n")
	fmt.Fprintf(&b, "--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: %s\r\n\r\n",
		mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	enc := base64.StdEncoding.EncodeToString(content)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--b1--\r\n")
	return b.Bytes()
}

// relayedLinks decodes the relayed message's text and returns its links.
func relayedLinks(t *testing.T, d *daemon, raw []byte) []string {
	t.Helper()
	plain := decodedText(t, raw, "text/plain")
	re := regexp.MustCompile(regexp.QuoteMeta(d.linkURL) + `/d/[A-Za-z0-9_-]+`)
	return re.FindAllString(plain, -1)
}

func TestServeRelaysAndServesDownloads(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, "")

	content := make([]byte, 1<<20+17)
	rand.Read(content)
	name := "請求書 2026年11月.pdf"
	if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment(name, content)); err != nil {
		t.Fatalf("send: %v", err)
	}
	msgs := hop.Messages()
	if len(msgs) != 1 {
		t.Fatalf("next hop got %d messages", len(msgs))
	}
	links := relayedLinks(t, d, msgs[0].Data)
	if len(links) != 1 {
		t.Fatalf("want one link in the text part, got %v", links)
	}
	resp, data := download(t, links[0])
	if resp.StatusCode != http.StatusOK || !bytes.Equal(data, content) {
		t.Fatalf("download: %s, %d bytes (want %d identical)", resp.Status, len(data), len(content))
	}
	_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
	if params["filename"] != name {
		t.Errorf("downloaded as %q, want %q", params["filename"], name)
	}

	// The audit export works while serve runs and shows the whole story.
	today := time.Now().In(mustZone(t, "Asia/Tokyo")).Format("2006-01-02")
	out, errOut, code := runCLI(t, "audit", "export", "-config", d.config, "-from", today, "-to", today, "-format", "jsonl")
	if code != 0 {
		t.Fatalf("audit export exit %d: %s", code, errOut)
	}
	types := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		if _, err := time.Parse(time.RFC3339, fmt.Sprint(ev["time"])); err != nil || !strings.HasSuffix(fmt.Sprint(ev["time"]), "+09:00") {
			t.Errorf("time %v is not RFC 3339 in the configured zone", ev["time"])
		}
		types[fmt.Sprint(ev["type"])] = ev
	}
	for _, typ := range []string{"mail.received", "file.stored", "link.created", "link.viewed", "download.ok", "mail.relayed"} {
		if types[typ] == nil {
			t.Errorf("audit export lacks %s: %s", typ, out)
		}
	}
	if dl := types["download.ok"]; dl != nil {
		if dl["file_name"] != name || dl["link_id"] == "" || dl["client_addr"] != "127.0.0.1" || dl["user_agent"] == nil {
			t.Errorf("download.ok event lacks file, link, client or agent: %v", dl)
		}
	}
	csvOut, errOut, code := runCLI(t, "audit", "export", "--config", d.config, "--from", today, "--to", today, "--format", "csv")
	if code != 0 {
		t.Fatalf("csv export exit %d: %s", code, errOut)
	}
	rows, err := csv.NewReader(strings.NewReader(csvOut)).ReadAll()
	if err != nil || len(rows) < 2 || !slices.Contains(rows[0], "time") {
		t.Fatalf("csv export: %v %q", err, csvOut)
	}

	if err := d.stop(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, d.log.String())
	}
}

func TestDemoOutboxReceivesMessage(t *testing.T) {
	dir := t.TempDir()
	outbox := filepath.Join(dir, "outbox")
	d := startDaemon(t, "outbox:"+outbox, "")
	content := bytes.Repeat([]byte("demo "), 1000)
	if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("demo.txt", content)); err != nil {
		t.Fatalf("send: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(outbox, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("outbox has %d .eml files, want 1", len(files))
	}
	raw, _ := os.ReadFile(files[0])
	if !bytes.HasPrefix(raw, []byte("Return-Path: <alice@example.com>\r\nX-Envelope-To: bob@example.net\r\n")) {
		t.Errorf("outbox file lacks the envelope: %q", raw[:min(len(raw), 200)])
	}
	links := relayedLinks(t, d, raw)
	if len(links) != 1 {
		t.Fatalf("links in outbox message: %v", links)
	}
	if resp, data := download(t, links[0]); resp.StatusCode != 200 || !bytes.Equal(data, content) {
		t.Fatalf("download from outbox link: %s", resp.Status)
	}
}

func TestLinksExpireToTheSecond(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, "")
	// Rewrite default_expiry to 5s and restart.
	cfg, _ := os.ReadFile(d.config)
	os.WriteFile(d.config, bytes.Replace(cfg, []byte(`default_expiry: "1h"`), []byte(`default_expiry: "5s"`), 1), 0o600)
	d.stop()
	d.start()
	if err := d.send("a@example.com", []string{"b@example.net"}, mailWithAttachment("soon.pdf", []byte("gone soon"))); err != nil {
		t.Fatal(err)
	}
	links := relayedLinks(t, d, hop.Messages()[0].Data)
	if resp, err := http.Get(links[0]); err != nil || resp.StatusCode != 200 {
		t.Fatalf("fresh link: %v %v", resp, err)
	}
	time.Sleep(6 * time.Second)
	resp, err := http.Get(links[0])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("expired link answered %s, want 410", resp.Status)
	}
	// The janitor purges at start-up (and every minute): blob and metadata
	// go, and the purge is audited.
	blobs := filepath.Join(d.dir, "data", "blobs")
	if n := len(filesContaining(t, blobs, []byte("age-encryption.org"))); n != 1 {
		t.Fatalf("%d blobs before the purge, want the one of soon.pdf", n)
	}
	d.stop()
	d.start()
	waitFor(t, "file.purged event", func() bool {
		for _, ev := range exportEvents(t, d) {
			if ev["type"] == "file.purged" && ev["file_name"] == "soon.pdf" {
				return true
			}
		}
		return false
	})
	if n := len(filesContaining(t, blobs, []byte("age-encryption.org"))); n != 0 {
		t.Fatalf("%d blobs left after the purge", n)
	}
}

func TestCLIErrorsNameTheProblem(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("smtp:\n  listen: \"127.0.0.1:2525\"\n  bogus_key: 1\n"), 0o600)
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(fmt.Sprintf("storage:\n  dir: %q\n", filepath.Join(dir, "data"))), 0o600)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"missing config", []string{"serve"}, 2, "-config FILE is required"},
		{"unknown key", []string{"check-config", "-config", bad}, 1, `unknown key "smtp.bogus_key"`},
		{"good config", []string{"check-config", "--config", good}, 0, ""},
		{"bad date", []string{"audit", "export", "-config", good, "-from", "2026-13-01", "-to", "2026-12-01", "-format", "csv"}, 2, "-from"},
		{"reversed range", []string{"audit", "export", "-config", good, "-from", "2026-12-02", "-to", "2026-12-01", "-format", "csv"}, 2, "after"},
		{"bad format", []string{"audit", "export", "-config", good, "-from", "2026-12-01", "-to", "2026-12-01", "-format", "xml"}, 2, "format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := runCLI(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d stderr %q, want exit %d containing %q", code, errOut, tt.code, tt.want)
			}
		})
	}
	// A future range is simply empty.
	out, errOut, code := runCLI(t, "audit", "export", "-config", good, "-from", "2999-01-01", "-to", "2999-01-31", "-format", "jsonl")
	if code != 0 || out != "" {
		t.Fatalf("future range: exit %d out %q err %q", code, out, errOut)
	}
}

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

func mustZone(t *testing.T, name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
