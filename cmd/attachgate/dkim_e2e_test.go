package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"github.com/attachgate/attachgate/smtptest"
)

// keygen runs `attachgate dkim keygen` and returns the key file and the
// TXT value printed for DNS (the quoted strings of the record, joined).
func keygen(t *testing.T, domain, selector, typ string) (string, string) {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), domain+".pem")
	out, err := exec.Command(binPath, "dkim", "keygen", "-domain", domain, "-selector", selector,
		"-type", typ, "-out", keyFile).CombinedOutput()
	if err != nil {
		t.Fatalf("dkim keygen: %v\n%s", err, out)
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	rec := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(selector+"._domainkey."+domain+".") + ` IN TXT (.*)$`).FindSubmatch(out)
	if rec == nil {
		t.Fatalf("keygen printed no TXT record for %s:\n%s", domain, out)
	}
	var txt strings.Builder
	for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllSubmatch(rec[1], -1) {
		txt.Write(m[1])
	}
	// A second keygen must not overwrite the key published in DNS.
	again, err := exec.Command(binPath, "dkim", "keygen", "-domain", domain, "-selector", selector, "-out", keyFile).CombinedOutput()
	if err == nil || !strings.Contains(string(again), "not overwriting") {
		t.Fatalf("second keygen over the same file: %v\n%s", err, again)
	}
	return keyFile, txt.String()
}

// verifyDKIM checks raw with go-msgauth, DNS answered from records.
func verifyDKIM(t *testing.T, raw []byte, records map[string]string) []*msgdkim.Verification {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(raw), &msgdkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			if v, ok := records[name]; ok {
				return []string{v}, nil
			}
			return nil, fmt.Errorf("no TXT record %s", name)
		},
	})
	if err != nil {
		t.Fatalf("dkim verify: %v", err)
	}
	return vs
}

// TestDKIMSignsRelayedMail: mail from a configured domain leaves
// attachgate signed over its final bytes — rewritten with links or passed
// through — and verifies with go-msgauth against the record keygen
// printed; mail from other domains goes out unsigned.
func TestDKIMSignsRelayedMail(t *testing.T) {
	rsaKey, rsaTXT := keygen(t, "example.com", "s1", "rsa")
	edKey, edTXT := keygen(t, "corp.example", "ed1", "ed25519")
	records := map[string]string{"s1._domainkey.example.com": rsaTXT, "ed1._domainkey.corp.example": edTXT}
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, fmt.Sprintf(`dkim:
  - domain: example.com
    selector: s1
    key_file: %q
  - domain: corp.example
    selector: ed1
    key_file: %q
`, rsaKey, edKey))

	content := make([]byte, 300<<10)
	rand.Read(content)
	withFile := mailWithAttachment("見積書.pdf", content) // From: alice@example.com
	plain := []byte("From: =?UTF-8?B?6Yi05pyo?= <suzuki@mail.corp.example>\r\nTo: bob@example.net\r\n" +
		"Subject: no attachment\r\nMessage-ID: <plain@corp.example>\r\n\r\nJust text.\r\n")
	other := []byte("From: eve@other.example\r\nTo: bob@example.net\r\nSubject: x\r\n\r\nnot ours to sign\r\n")
	// Two From fields: no single author domain, so no signature (DMARC
	// receivers reject such mail anyway).
	twoFroms := []byte("From: alice@example.com\r\nFrom: ceo@example.com\r\nTo: bob@example.net\r\nSubject: x\r\n\r\nhi\r\n")
	for _, m := range [][]byte{withFile, plain, other, twoFroms} {
		if err := d.send("sender@example.com", []string{"bob@example.net"}, m); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	msgs := hop.Messages()
	if len(msgs) != 4 {
		t.Fatalf("next hop got %d messages", len(msgs))
	}

	// 1: rewritten with a link, signed for example.com with RSA.
	links := relayedLinks(t, d, msgs[0].Data)
	if len(links) != 1 {
		t.Fatalf("want one link, got %v", links)
	}
	vs := verifyDKIM(t, msgs[0].Data, records)
	if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "example.com" {
		t.Fatalf("rewritten mail: want one valid signature by example.com, got %s", describe(vs))
	}
	if !bytes.HasPrefix(msgs[0].Data, []byte("DKIM-Signature: ")) {
		t.Fatal("the signature is not the first field")
	}
	if resp, data := download(t, links[0]); resp.StatusCode != 200 || !bytes.Equal(data, content) {
		t.Fatalf("download: %s", resp.Status)
	}
	// Tampering with the link in transit breaks the signature.
	tampered := bytes.Replace(msgs[0].Data, []byte("/d/"), []byte("/x/"), 1)
	if vs := verifyDKIM(t, tampered, records); len(vs) != 1 || vs[0].Err == nil {
		t.Fatal("a changed link still verifies")
	}

	// 2: no attachment, From in a subdomain: signed for corp.example.
	vs = verifyDKIM(t, msgs[1].Data, records)
	if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "corp.example" {
		t.Fatalf("plain mail: want one valid signature by corp.example, got %s", describe(vs))
	}

	// 3: not a signing domain.
	if bytes.Contains(msgs[2].Data, []byte("DKIM-Signature")) {
		t.Fatal("mail from other.example was signed")
	}
	if bytes.Contains(msgs[3].Data, []byte("DKIM-Signature")) {
		t.Fatal("mail with two From fields was signed")
	}
	// The signed copies are spooled (encrypted) and removed afterwards.
	if left, _ := os.ReadDir(filepath.Join(d.dir, "data", "spool")); len(left) != 0 {
		t.Fatalf("spool files left behind: %v", left)
	}
	if !strings.Contains(d.log.String(), "DKIM signing enabled") {
		t.Fatal("start-up log does not say DKIM is on")
	}
}

func TestDKIMKeygenRefusesBadArguments(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"dkim", "keygen", "-selector", "s1"}, "-domain and -selector are required"},
		{[]string{"dkim", "keygen", "-domain", "corp example", "-selector", "s1"}, "-domain:"},
		{[]string{"dkim", "keygen", "-domain", "corp.example", "-selector", "s1", "-type", "dsa"}, "-type: want rsa or ed25519"},
		{[]string{"dkim", "rotate"}, "usage: attachgate dkim keygen"},
	} {
		cmd := exec.Command(binPath, tt.args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), tt.want) {
			t.Errorf("%v: %v\n%s", tt.args, err, out)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("refused keygen left files: %v", entries)
	}
}

func describe(vs []*msgdkim.Verification) string {
	if len(vs) == 0 {
		return "no signature"
	}
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "[d=%s err=%v] ", v.Domain, v.Err)
	}
	return b.String()
}
