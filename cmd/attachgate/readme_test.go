package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestReadmeWalkthrough runs the README's "send a file" step with swaks, a
// real SMTP client, against the demo outbox next hop.
func TestReadmeWalkthrough(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("swaks missing: make test installs it")
		}
		t.Skip("swaks not installed (make test installs it)")
	}
	outbox := filepath.Join(t.TempDir(), "outbox")
	d := startDaemon(t, "outbox:"+outbox, "")
	report := filepath.Join(t.TempDir(), "report.pdf")
	content := make([]byte, 2000000)
	rand.Read(content)
	os.WriteFile(report, content, 0o600)
	out, err := exec.Command(swaks, "--server", d.smtpAddr, "--from", "alice@example.com", "--to", "bob@example.net",
		"--header", "Subject: the report", "--body", "Hello Bob, the report is attached.",
		"--attach-type", "application/pdf", "--attach-name", "report.pdf", "--attach", "@"+report).CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	files, _ := filepath.Glob(filepath.Join(outbox, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("outbox holds %d messages", len(files))
	}
	raw, _ := os.ReadFile(files[0])
	links := relayedLinks(t, d, raw)
	if len(links) != 1 || !bytes.Contains(raw, []byte(links[0])) {
		t.Fatalf("want one link, whole in the raw message: %v", links)
	}
	resp, data := download(t, links[0])
	if resp.StatusCode != 200 || !bytes.Equal(data, content) {
		t.Fatalf("download: %s, %d bytes", resp.Status, len(data))
	}
}
