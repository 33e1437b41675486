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

// TestReadmeDownloadKeepsJapaneseName runs the README's wget download
// block, as written (the link server's address aside), and checks that
// it saves a Japanese-named attachment under its name with its bytes.
func TestReadmeDownloadKeepsJapaneseName(t *testing.T) {
	if _, err := exec.LookPath("wget"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("wget missing: make deps installs it")
		}
		t.Skip("wget not installed (make deps installs it)")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := bytes.Cut(readme, []byte("The same with wget"))
	if !ok {
		t.Fatal("README has no wget download walk-through")
	}
	_, block, _ := bytes.Cut(after, []byte("```sh\n"))
	block, _, _ = bytes.Cut(block, []byte("```\n"))
	if !bytes.Contains(block, []byte("--content-disposition")) {
		t.Fatalf("unexpected block:\n%s", block)
	}

	work := t.TempDir()
	d := startDaemon(t, "outbox:"+filepath.Join(work, "data", "outbox"), "")
	content := make([]byte, 300000)
	rand.Read(content)
	os.WriteFile(filepath.Join(work, "report.pdf"), content, 0o600)
	if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("見積書.pdf", content)); err != nil {
		t.Fatal(err)
	}
	script := bytes.ReplaceAll(block, []byte("http://127.0.0.1:8080"), []byte(d.linkURL))
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", string(script))
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("README block: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(work, "downloaded", "見積書.pdf"))
	if err != nil {
		entries, _ := os.ReadDir(filepath.Join(work, "downloaded"))
		t.Fatalf("not saved under its Japanese name: %v (directory holds %v)", err, entries)
	}
	if !bytes.Equal(got, content) {
		t.Fatal("downloaded bytes differ")
	}
	if !bytes.Contains(out, []byte("見積書.pdf")) {
		t.Fatalf("sha256sum line does not show the name:\n%s", out)
	}
}
