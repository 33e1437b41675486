// Package dkim owns DKIM signing of the mail attachgate relays: the signing
// keys (PEM files, RSA of at least 2048 bits or Ed25519), which key signs a
// message (by the domain of its From header), the signature itself
// (relaxed/relaxed, SHA-256, a fixed modern header set with From
// oversigned, computed with github.com/emersion/go-msgauth), and key
// generation with the DNS TXT record to publish.
//
// Signing reads the final message twice without holding it in memory: once
// to compute the signature, then again to send the signature and the
// message (see WriteSigned).
package dkim

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"os"
	"strings"

	"github.com/emersion/go-message/charset"
	msgdkim "github.com/emersion/go-msgauth/dkim"
)

// MinRSABits is the smallest RSA key accepted: 1024-bit keys are no longer
// trusted by the large receivers (RFC 8301).
const MinRSABits = 2048

// SignedHeaders is the h= list: the fields modern signers cover. From is
// listed twice (oversigned), so a second From added in transit breaks the
// signature; fields that are absent when signing are signed as empty, so
// adding them later breaks it too. Trace fields (Received) are left out:
// every hop adds one.
var SignedHeaders = []string{
	"From", "From",
	"Reply-To", "Sender", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post",
}

// Entry is one configured signing domain (the config's dkim: list).
type Entry struct {
	Domain   string
	Selector string
	KeyFile  string
}

// Key signs for one domain.
type Key struct {
	Domain   string
	Selector string
	signer   crypto.Signer
}

// Keys maps signing domains to keys; the zero value and nil sign nothing.
type Keys struct {
	byDomain map[string]*Key
}

// Load reads every entry's key file. Errors name the entry by index and
// key, as the config file does ("dkim[0].key_file: ...").
func Load(entries []Entry) (*Keys, error) {
	ks := &Keys{byDomain: map[string]*Key{}}
	var errs []error
	for i, e := range entries {
		domain := strings.ToLower(strings.TrimSuffix(e.Domain, "."))
		if err := checkDomain(domain); err != nil {
			errs = append(errs, fmt.Errorf("dkim[%d].domain: %w", i, err))
			continue
		}
		if err := checkSelector(e.Selector); err != nil {
			errs = append(errs, fmt.Errorf("dkim[%d].selector: %w", i, err))
			continue
		}
		if ks.byDomain[domain] != nil {
			errs = append(errs, fmt.Errorf("dkim[%d].domain: %q is listed twice (one entry per signing domain)", i, domain))
			continue
		}
		if e.KeyFile == "" {
			errs = append(errs, fmt.Errorf("dkim[%d].key_file: must name a PEM private key file", i))
			continue
		}
		signer, err := LoadKeyFile(e.KeyFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("dkim[%d].key_file: %w", i, err))
			continue
		}
		ks.byDomain[domain] = &Key{Domain: domain, Selector: e.Selector, signer: signer}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ks, nil
}

// Len is the number of signing domains.
func (ks *Keys) Len() int {
	if ks == nil {
		return 0
	}
	return len(ks.byDomain)
}

// For returns the key for a From domain: the entry for the domain itself,
// else for its closest parent domain (d=example.com aligns with From
// @mail.example.com under DMARC's relaxed alignment); nil when none.
func (ks *Keys) For(domain string) *Key {
	if ks == nil || len(ks.byDomain) == 0 {
		return nil
	}
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	for d != "" {
		if k := ks.byDomain[d]; k != nil {
			return k
		}
		i := strings.IndexByte(d, '.')
		if i < 0 {
			break
		}
		d = d[i+1:]
	}
	return nil
}

var addressParser = &mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader}}

// FromDomain returns the domain of the addresses in a From header value,
// or "" when it has none, cannot be parsed, or names addresses in
// different domains (no single signing domain aligns with all of them).
func FromDomain(from string) string {
	if strings.TrimSpace(from) == "" {
		return ""
	}
	list, err := addressParser.ParseList(from)
	if err != nil || len(list) == 0 {
		return ""
	}
	domain := ""
	for _, a := range list {
		at := strings.LastIndexByte(a.Address, '@')
		if at < 0 {
			return ""
		}
		d := strings.ToLower(a.Address[at+1:])
		if domain != "" && d != domain {
			return ""
		}
		domain = d
	}
	return domain
}

func (k *Key) options() *msgdkim.SignOptions {
	return &msgdkim.SignOptions{
		Domain:                 k.Domain,
		Selector:               k.Selector,
		Signer:                 k.signer,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: msgdkim.CanonicalizationRelaxed,
		BodyCanonicalization:   msgdkim.CanonicalizationRelaxed,
		HeaderKeys:             SignedHeaders,
	}
}

// Sign reads a whole message (header and body, CRLF line ends, as it goes
// to the next hop) from r and returns the DKIM-Signature header field to
// put in front of it, folded and ending in CRLF. Only the header is held
// in memory; the body is hashed as it streams.
func (k *Key) Sign(r io.Reader) (string, error) {
	s, err := msgdkim.NewSigner(k.options())
	if err != nil {
		return "", fmt.Errorf("dkim %s: %w", k.Domain, err)
	}
	if _, err := io.Copy(s, r); err != nil {
		s.Close()
		return "", fmt.Errorf("dkim %s: read message: %w", k.Domain, err)
	}
	if err := s.Close(); err != nil {
		return "", fmt.Errorf("dkim %s: sign: %w", k.Domain, err)
	}
	return s.Signature(), nil
}

// WriteSigned writes the signature of msg and then msg itself to w: one
// read of msg computes the signature, a second (after seeking back to the
// start) copies it. msg is typically an encrypted spool file.
func (k *Key) WriteSigned(w io.Writer, msg io.ReadSeeker) error {
	start, err := msg.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("dkim %s: %w", k.Domain, err)
	}
	sig, err := k.Sign(msg)
	if err != nil {
		return err
	}
	if _, err := msg.Seek(start, io.SeekStart); err != nil {
		return fmt.Errorf("dkim %s: rewind message: %w", k.Domain, err)
	}
	if _, err := io.WriteString(w, sig); err != nil {
		return err
	}
	_, err = io.Copy(w, msg)
	return err
}

// LoadKeyFile reads a PEM private key: PKCS#8 (RSA or Ed25519) or PKCS#1
// (RSA). RSA keys must have at least MinRSABits bits. A key file that
// every user on the host may read is refused.
func LoadKeyFile(path string) (crypto.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o004 != 0 {
		return nil, fmt.Errorf("%s is readable by every user (mode %04o): chmod 0600 or 0640", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseKey parses a PEM private key as LoadKeyFile does.
func ParseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block (want a PEM private key, RSA-2048 or Ed25519)")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key (want PRIVATE KEY or RSA PRIVATE KEY)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return nil, fmt.Errorf("RSA key has %d bits, want at least %d", bits, MinRSABits)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("unsupported key type %T (want RSA or Ed25519)", key)
	}
}

// CheckNames validates a signing domain and selector as Load does.
func CheckNames(domain, selector string) error {
	if err := checkDomain(strings.ToLower(strings.TrimSuffix(domain, "."))); err != nil {
		return fmt.Errorf("domain: %w", err)
	}
	if err := checkSelector(selector); err != nil {
		return fmt.Errorf("selector: %w", err)
	}
	return nil
}

func checkDomain(d string) error {
	if d == "" {
		return errors.New("must be set (the signing domain, d=)")
	}
	if len(d) > 253 || !strings.Contains(d, ".") {
		return fmt.Errorf("want a domain name such as corp.example, got %q", d)
	}
	for _, label := range strings.Split(d, ".") {
		if !isLabel(label) {
			return fmt.Errorf("want a domain name such as corp.example (ASCII, A-labels for IDNs), got %q", d)
		}
	}
	return nil
}

func checkSelector(s string) error {
	if s == "" {
		return errors.New("must be set (the selector, s=)")
	}
	for _, label := range strings.Split(s, ".") {
		if !isLabel(label) {
			return fmt.Errorf("want DNS labels such as s1 or 2026a, got %q", s)
		}
	}
	return nil
}

func isLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, c := range l {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
