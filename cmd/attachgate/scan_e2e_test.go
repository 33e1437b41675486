package main

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/scan/clamdtest"
	"github.com/attachgate/attachgate/smtptest"
)

// scanMail is a mail with one base64 attachment.
func scanMail(name, contentType string, content []byte) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\nTo: b@example.net\r\nSubject: scan\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/mixed; boundary=\"sb\"\r\n\r\n--sb\r\nContent-Type: text/plain\r\n\r\nhello\r\n")
	fmt.Fprintf(&b, "--sb\r\nContent-Type: %s\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=%q\r\n\r\n%s\r\n--sb--\r\n",
		contentType, name, base64.StdEncoding.EncodeToString(content))
	return b.Bytes()
}

// ppapZip is a zip whose one entry carries the encryption flag.
func ppapZip(t *testing.T) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	data := []byte("twelve bytes and ciphertext")
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "budget.xlsx", Method: zip.Store, Flags: 0x1,
		CRC32: crc32.ChecksumIEEE(data), CompressedSize64: uint64(len(data)), UncompressedSize64: uint64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	zw.Close()
	return b.Bytes()
}

const scanPolicyYAML = `policies:
  - name: ppap
    match: {encrypted_archive: true, recipient_domains_not: ["example.com"]}
    action: reject
`

// TestServeScansWithClamd runs the daemon against a real clamd: the
// wiring of scan.clamd, scan.on_infected and encrypted_archive.
func TestServeScansWithClamd(t *testing.T) {
	clamd := clamdtest.Start(t, clamdtest.Options{Unix: true})
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, fmt.Sprintf("%sscan:\n  clamd: %q\n  timeout: \"10s\"\n  on_infected: reject\n", scanPolicyYAML, clamd.Addr))

	reply := func(err error) string {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			return fmt.Sprint(err)
		}
		return fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
	}
	if err := d.send("a@example.com", []string{"b@example.net"}, scanMail("report.pdf", "application/pdf", []byte("%PDF-1.7 clean"))); err != nil {
		t.Fatalf("clean mail: %v", err)
	}
	err := d.send("a@example.com", []string{"b@example.net"}, scanMail("invoice.com", "application/octet-stream", []byte(clamdtest.EICAR)))
	if r := reply(err); !strings.HasPrefix(r, "554 5.7.1") || !strings.Contains(r, clamdtest.Signature) {
		t.Fatalf("EICAR: %s", r)
	}
	err = d.send("a@example.com", []string{"b@example.net"}, scanMail("budget.zip", "application/zip", ppapZip(t)))
	if r := reply(err); !strings.HasPrefix(r, "550 5.7.1 Message refused by policy ppap") {
		t.Fatalf("encrypted zip: %s", r)
	}
	if got := hop.Messages(); len(got) != 1 {
		t.Fatalf("the next hop got %d messages, want the clean one", len(got))
	}
	clamd.Stop()
	err = d.send("a@example.com", []string{"b@example.net"}, scanMail("report.pdf", "application/pdf", []byte("%PDF-1.7 clean")))
	if r := reply(err); !strings.HasPrefix(r, "451 4.7.1") {
		t.Fatalf("clamd stopped: %s", r)
	}
	out, errOut, code := runCLI(t, "audit", "export", "-config", d.config, "-from", "2000-01-01", "-to", "2100-01-01", "-format", "jsonl")
	if code != 0 {
		t.Fatalf("audit export: %d %s", code, errOut)
	}
	for _, want := range []string{`"type":"scan.clean"`, `"type":"scan.infected"`, `"type":"scan.error"`} {
		if !strings.Contains(out, want) {
			t.Errorf("audit export lacks %s", want)
		}
	}
}

func TestPolicyTestShowsEncryptedArchive(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "attachgate.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("storage:\n  dir: %q\n%s", filepath.Join(dir, "data"), scanPolicyYAML)), 0o600)
	eml := filepath.Join(dir, "ppap.eml")
	os.WriteFile(eml, scanMail("budget.zip", "application/zip", ppapZip(t)), 0o600)
	out, errOut, code := runCLI(t, "policy", "test", "-config", cfg, "-from", "a@example.com", "-to", "b@example.net", eml)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"application/zip (encrypted archive)", "ppap", "message: reject by rule ppap"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
}
