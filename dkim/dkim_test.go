package dkim

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	msgdkim "github.com/emersion/go-msgauth/dkim"
)

const testMessage = "From: Alice <alice@corp.example>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: =?UTF-8?B?5YWl5pyt?=\r\n" +
	"Date: Tue, 01 Dec 2026 10:00:00 +0900\r\n" +
	"Message-ID: <m1@corp.example>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hello Bob,\r\n\r\nthe file is linked below.\r\n"

// writeKey writes a generated key to a 0600 file and returns the loaded
// key set and the TXT value to publish.
func writeKey(t *testing.T, domain, selector, algorithm string) (*Keys, string) {
	t.Helper()
	pemData, signer, err := GenerateKey(algorithm)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), domain+".pem")
	if err := os.WriteFile(path, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	ks, err := Load([]Entry{{Domain: domain, Selector: selector, KeyFile: path}})
	if err != nil {
		t.Fatal(err)
	}
	txt, err := TXTValue(signer)
	if err != nil {
		t.Fatal(err)
	}
	return ks, txt
}

// verify runs go-msgauth's verifier with a TXT lookup that knows exactly
// one record.
func verify(t *testing.T, msg []byte, name, txt string) []*msgdkim.Verification {
	t.Helper()
	vs, err := msgdkim.VerifyWithOptions(bytes.NewReader(msg), &msgdkim.VerifyOptions{
		LookupTXT: func(domain string) ([]string, error) {
			if domain == name {
				return []string{txt}, nil
			}
			return nil, fmt.Errorf("no TXT record for %s", domain)
		},
	})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return vs
}

func TestSignVerifies(t *testing.T) {
	for _, alg := range []string{RSA, Ed25519} {
		t.Run(alg, func(t *testing.T) {
			ks, txt := writeKey(t, "corp.example", "s1", alg)
			key := ks.For("corp.example")
			var out bytes.Buffer
			if err := key.WriteSigned(&out, strings.NewReader(testMessage)); err != nil {
				t.Fatal(err)
			}
			signed := out.Bytes()
			if !bytes.HasSuffix(signed, []byte(testMessage)) {
				t.Fatal("the message after the signature is not the input, byte for byte")
			}
			vs := verify(t, signed, "s1._domainkey.corp.example", txt)
			if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "corp.example" {
				t.Fatalf("verification: %+v", vs[0])
			}
			sig := string(signed[:len(signed)-len(testMessage)])
			for _, want := range []string{"c=relaxed/relaxed", "d=corp.example", "s=s1", "a=" + alg + "-sha256"} {
				if !strings.Contains(strings.Join(strings.Fields(sig), ""), strings.ReplaceAll(want, " ", "")) {
					t.Errorf("signature lacks %s:\n%s", want, sig)
				}
			}
			h := hTag(t, sig)
			if strings.Count(strings.ToLower(h), "from") != 2 {
				t.Errorf("From is not oversigned: h=%s", h)
			}
			if strings.Contains(strings.ToLower(h), "received") {
				t.Errorf("trace fields must not be signed: h=%s", h)
			}
			for _, line := range strings.Split(sig, "\r\n") {
				if len(line) > 998 {
					t.Errorf("signature line of %d bytes", len(line))
				}
			}
		})
	}
}

func hTag(t *testing.T, sig string) string {
	t.Helper()
	flat := strings.Join(strings.Fields(sig), "")
	i := strings.Index(flat, ";h=")
	if i < 0 {
		t.Fatalf("no h= tag in %s", sig)
	}
	h := flat[i+3:]
	if j := strings.IndexByte(h, ';'); j >= 0 {
		h = h[:j]
	}
	return h
}

// What a hop may do to the message and still pass relaxed/relaxed, and
// what breaks the signature.
func TestSignatureSurvivesAndBreaks(t *testing.T) {
	ks, txt := writeKey(t, "corp.example", "s1", Ed25519)
	var out bytes.Buffer
	if err := ks.For("corp.example").WriteSigned(&out, strings.NewReader(testMessage)); err != nil {
		t.Fatal(err)
	}
	signed := out.String()
	cases := []struct {
		name   string
		change func(string) string
		valid  bool
	}{
		{"unchanged", func(s string) string { return s }, true},
		{"a Received field added on top", func(s string) string {
			return "Received: from gw by mx; Tue, 01 Dec 2026 10:00:01 +0900\r\n" + s
		}, true},
		{"header whitespace refolded", func(s string) string {
			return strings.Replace(s, "To: bob@example.net", "To:   bob@example.net", 1)
		}, true},
		{"trailing spaces in the body", func(s string) string {
			return strings.Replace(s, "Hello Bob,\r\n", "Hello Bob,   \r\n", 1)
		}, true},
		{"second From added (oversigned)", func(s string) string {
			return strings.Replace(s, "To: bob@example.net\r\n", "To: bob@example.net\r\nFrom: ceo@corp.example\r\n", 1)
		}, false},
		{"Reply-To added", func(s string) string {
			return strings.Replace(s, "To: bob@example.net\r\n", "To: bob@example.net\r\nReply-To: x@evil.example\r\n", 1)
		}, false},
		{"subject changed", func(s string) string {
			return strings.Replace(s, "5YWl5pyt", "5YWl5pys", 1)
		}, false},
		{"link in the body changed", func(s string) string {
			return strings.Replace(s, "linked below", "linked elsewhere", 1)
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vs := verify(t, []byte(c.change(signed)), "s1._domainkey.corp.example", txt)
			if len(vs) != 1 {
				t.Fatalf("%d verifications", len(vs))
			}
			if (vs[0].Err == nil) != c.valid {
				t.Fatalf("valid=%v, want %v (err %v)", vs[0].Err == nil, c.valid, vs[0].Err)
			}
		})
	}
}

// The body is hashed as it streams: a message far larger than any buffer
// signs and verifies, and Sign reads it exactly once.
func TestSignStreamsLargeBody(t *testing.T) {
	ks, txt := writeKey(t, "corp.example", "s1", RSA)
	const lines = 200000 // ~16 MB
	body := func() io.Reader {
		line := strings.Repeat("0123456789", 7) + "\r\n"
		return io.MultiReader(strings.NewReader(testMessage), &repeatReader{s: line, n: lines})
	}
	sig, err := ks.For("corp.example").Sign(body())
	if err != nil {
		t.Fatal(err)
	}
	vs, err := msgdkim.VerifyWithOptions(io.MultiReader(strings.NewReader(sig), body()), &msgdkim.VerifyOptions{
		LookupTXT: func(string) ([]string, error) { return []string{txt}, nil },
	})
	if err != nil || len(vs) != 1 || vs[0].Err != nil {
		t.Fatalf("verify: %v %+v", err, vs)
	}
}

type repeatReader struct {
	s   string
	n   int
	off int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.s[r.off:])
	r.off += n
	if r.off == len(r.s) {
		r.off = 0
		r.n--
	}
	return n, nil
}

func TestFor(t *testing.T) {
	ks, _ := writeKey(t, "corp.example", "s1", Ed25519)
	cases := []struct {
		domain string
		want   bool
	}{
		{"corp.example", true},
		{"CORP.Example", true},
		{"mail.corp.example", true}, // parent domain: relaxed DMARC alignment
		{"corp.example.", true},
		{"othercorp.example", false},
		{"example", false},
		{"corp.example.net", false},
		{"", false},
	}
	for _, c := range cases {
		if got := ks.For(c.domain) != nil; got != c.want {
			t.Errorf("For(%q) = %v, want %v", c.domain, got, c.want)
		}
	}
	var none *Keys
	if none.For("corp.example") != nil || none.Len() != 0 {
		t.Error("nil Keys must sign nothing")
	}
}

func TestFromDomain(t *testing.T) {
	cases := []struct{ from, want string }{
		{"alice@corp.example", "corp.example"},
		{"Alice <alice@Corp.Example>", "corp.example"},
		{`"Suzuki, Taro" <taro@corp.example>`, "corp.example"},
		{"=?UTF-8?B?6Yi05pyo?= <suzuki@corp.example>", "corp.example"},
		{"=?ISO-2022-JP?B?GyRCTmtMWhsoQg==?= <suzuki@corp.example>", "corp.example"},
		{"a@corp.example, b@corp.example", "corp.example"},
		{"a@corp.example, b@other.example", ""}, // no one domain aligns
		{"undisclosed", ""},
		{"", ""},
		{"<>", ""},
	}
	for _, c := range cases {
		if got := FromDomain(c.from); got != c.want {
			t.Errorf("FromDomain(%q) = %q, want %q", c.from, got, c.want)
		}
	}
}

func TestLoadRefusesBadEntries(t *testing.T) {
	dir := t.TempDir()
	good, _, err := GenerateKey(Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(weak)})
	cert := []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	goodPath := write("good.pem", good, 0o600)
	cases := []struct {
		name  string
		entry Entry
		want  string
	}{
		{"no domain", Entry{Selector: "s1", KeyFile: goodPath}, "dkim[0].domain: must be set"},
		{"bad domain", Entry{Domain: "corp example", Selector: "s1", KeyFile: goodPath}, "dkim[0].domain: want a domain name"},
		{"single label", Entry{Domain: "localhost", Selector: "s1", KeyFile: goodPath}, "dkim[0].domain"},
		{"no selector", Entry{Domain: "corp.example", KeyFile: goodPath}, "dkim[0].selector: must be set"},
		{"bad selector", Entry{Domain: "corp.example", Selector: "s 1", KeyFile: goodPath}, "dkim[0].selector"},
		{"no key file", Entry{Domain: "corp.example", Selector: "s1"}, "dkim[0].key_file: must name"},
		{"missing key file", Entry{Domain: "corp.example", Selector: "s1", KeyFile: filepath.Join(dir, "nope.pem")}, "no such file"},
		{"world-readable key", Entry{Domain: "corp.example", Selector: "s1", KeyFile: write("open.pem", good, 0o644)}, "readable by every user"},
		{"RSA-1024", Entry{Domain: "corp.example", Selector: "s1", KeyFile: write("weak.pem", weakPEM, 0o600)}, "1024 bits, want at least 2048"},
		{"a certificate", Entry{Domain: "corp.example", Selector: "s1", KeyFile: write("cert.pem", cert, 0o600)}, "not a private key"},
		{"not PEM", Entry{Domain: "corp.example", Selector: "s1", KeyFile: write("junk.pem", []byte("hello"), 0o600)}, "no PEM block"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load([]Entry{c.entry})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
	_, err = Load([]Entry{{Domain: "corp.example", Selector: "s1", KeyFile: goodPath},
		{Domain: "Corp.Example", Selector: "s2", KeyFile: goodPath}})
	if err == nil || !strings.Contains(err.Error(), "dkim[1].domain") || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate domain: %v", err)
	}
}

func TestZoneRecordSplitsLongValues(t *testing.T) {
	_, key, err := GenerateKey(RSA)
	if err != nil {
		t.Fatal(err)
	}
	v, err := TXTValue(key)
	if err != nil {
		t.Fatal(err)
	}
	rec := ZoneRecord("corp.example", "s1", v)
	if !strings.HasPrefix(rec, "s1._domainkey.corp.example. IN TXT ( \"v=DKIM1; k=rsa; p=") {
		t.Fatalf("record: %s", rec)
	}
	var joined strings.Builder
	for _, q := range strings.Split(rec, `"`)[1:] {
		if q == " " || q == " )" {
			continue
		}
		if len(q) > 255 {
			t.Fatalf("TXT string of %d bytes", len(q))
		}
		joined.WriteString(q)
	}
	if joined.String() != v {
		t.Fatalf("strings do not join to the value:\n%s\n%s", joined.String(), v)
	}
}
