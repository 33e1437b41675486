package mailpart

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// Mail that must pass through untouched.
//
// Rewriting a signed message breaks its signature (the recipient's client
// reports it as forged or damaged), and rewriting an encrypted one links the
// ciphertext away from the key that opens it. Reports and automatic replies
// (bounces, delivery and read notifications, vacation replies) go back to
// programs and people that expect what was sent, and a notice added to a
// bounce could loop. So such mail is relayed unchanged but for its line
// ends (CopyPassThrough); policies may still reject or quarantine signed
// and encrypted mail as a whole.
//
// Walk finds them. A message is signed or encrypted by its top-level
// structure (a root multipart/signed, multipart/encrypted or S/MIME
// container, or inline PGP in a body text); an attached .p7m file is an
// ordinary attachment. Every leaf inside multipart/signed or
// multipart/encrypted, at any depth, and a root S/MIME container are
// neither attachments nor bodies ("sealed"): they are copied byte for byte,
// attachment rules cannot see into encrypted mail, and a signed message is
// matched as a whole by the message rules (policies' signed and
// encrypted). Inline PGP armour in a
// body text is found while the body is read; leaves after it are sealed,
// and the Summary tells the caller to forget what it stored of the earlier
// ones. Reports, automatic replies and bounces are not sealed: their
// attachments are reported as usual, so policies can still refuse or hold
// them, but the caller links nothing and relays them untouched.

// PassThrough reasons, as Summary.PassThrough returns them.
const (
	PassSigned        = "signed"
	PassEncrypted     = "encrypted"
	PassReport        = "report"
	PassAutoSubmitted = "auto-submitted"
	PassNullSender    = "null sender"
)

// PassThrough says why the message must be relayed untouched, or "" when it
// may be rewritten. nullSender is true for the envelope sender "<>"
// (bounces and other notifications).
func (s Summary) PassThrough(nullSender bool) string {
	switch {
	case s.Encrypted:
		return PassEncrypted
	case s.Signed:
		return PassSigned
	case s.Report:
		return PassReport
	case s.AutoSubmitted != "":
		return PassAutoSubmitted
	case nullSender:
		return PassNullSender
	}
	return ""
}

// sealing is what the walker learns about signed, encrypted and automatic
// mail.
type sealing struct {
	signed, encrypted, report bool
	autoSubmitted             string
	all                       bool // every leaf from now on is sealed
}

// autoSubmittedValue returns the Auto-Submitted keyword (RFC 3834) when it
// marks the message as automatic, "" for "no" or none.
func autoSubmittedValue(field string) string {
	v, _, _ := strings.Cut(field, ";")
	v = strings.ToLower(strings.TrimSpace(stripComment(v)))
	if v == "no" {
		return ""
	}
	return v
}

// sealEntity marks e sealed when it, an ancestor or the whole message must
// stay untouched, and records why.
//
// Only the top-level structure makes signed or encrypted mail: a root
// multipart/signed, multipart/encrypted or S/MIME container (and inline
// PGP in a body text, armourScanner). Deeper down, a multipart/signed or
// multipart/encrypted (a forwarded signed part, a list footer wrapped
// around a signed mail) is a sealed unit: copied byte for byte, nothing
// inside it linked or rewritten, but the rest of the message is handled as
// usual. An attached S/MIME file (an e-invoice fattura.xml.p7m, an
// application/pkcs7-mime attachment) is an ordinary attachment: linking it
// breaks no signature, and it must not carry the other files past the
// gateway.
func (s *sealing) sealEntity(e *entity) {
	mt := e.part.MediaType
	if e.isRoot() {
		s.autoSubmitted = autoSubmittedValue(e.part.Header.Get("Auto-Submitted"))
	}
	inSealed := e.parent != nil && e.parent.sealed
	switch {
	case mt == "multipart/signed":
		if e.isRoot() {
			s.signed = true
		}
		e.sealed = true
	case mt == "multipart/encrypted":
		if e.isRoot() {
			s.encrypted = true
		}
		e.sealed = true
	case e.isRoot() && (mt == "application/pgp-encrypted" || mt == "application/pkcs7-mime" || mt == "application/x-pkcs7-mime" || isOpaqueSMIMEName(e)):
		switch strings.ToLower(e.part.Params["smime-type"]) {
		case "signed-data", "certs-only":
			s.signed = true
		default:
			s.encrypted = true
		}
		e.sealed = true
	case mt == "multipart/report":
		s.report = true
	}
	if s.all || inSealed {
		e.sealed = true
	}
}

// isOpaqueSMIMEName: S/MIME sent as application/octet-stream with an
// smime.p7m name (RFC 8551 3.2.2).
func isOpaqueSMIMEName(e *entity) bool {
	if e.part.MediaType != "application/octet-stream" {
		return false
	}
	name := strings.ToLower(e.part.Filename)
	return strings.HasSuffix(name, ".p7m")
}

// pgpArmour are the armour lines of inline PGP that a rewrite would break.
var (
	pgpSignedArmour    = []byte("-----BEGIN PGP SIGNED MESSAGE-----")
	pgpEncryptedArmour = []byte("-----BEGIN PGP MESSAGE-----")
)

// armourScanner passes a body text through and records inline PGP armour,
// including armour split across reads.
type armourScanner struct {
	r     io.Reader
	s     *sealing
	carry []byte
}

func (a *armourScanner) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 && !(a.s.signed && a.s.encrypted) {
		data := append(a.carry, p[:n]...)
		if bytes.Contains(data, pgpSignedArmour) {
			a.s.signed, a.s.all = true, true
		}
		if bytes.Contains(data, pgpEncryptedArmour) {
			a.s.encrypted, a.s.all = true, true
		}
		keep := min(len(data), len(pgpSignedArmour)-1)
		a.carry = append(a.carry[:0], data[len(data)-keep:]...)
	}
	return n, err
}

// armourPeek is how much of a body text Rewrite looks at for inline PGP
// armour before it adds the notice.
const armourPeek = 64 << 10

// hasArmour reports whether the start of a body text (raw, transfer
// encoding intact; nothing is consumed) carries inline PGP armour.
func hasArmour(e *entity, raw *bufio.Reader) bool {
	head, _ := raw.Peek(armourPeek)
	var s sealing
	a := &armourScanner{r: transferDecoder(transferEncoding(e.part.Header.Get("Content-Transfer-Encoding")), bytes.NewReader(head)), s: &s}
	_, _ = io.Copy(io.Discard, a)
	return s.signed || s.encrypted
}
