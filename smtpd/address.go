package smtpd

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"github.com/attachgate/attachgate/policies"
)

// Envelope addresses are data, not syntax. go-smtp hands us a path's
// mailbox with a quoted local part kept as sent (third_party/go-smtp), but
// checks little else: the domain is whatever follows the local part up to
// a space or '>', and control characters and '@' pass. checkAddress accepts
// only what RFC 5321 section 4.1.2 allows (plus UTF-8 with SMTPUTF8,
// RFC 6531), so that what reaches the next hop, a header, a policy match
// or the audit log is the mailbox the client meant, and the domain after
// the last '@' is its domain.

var (
	errAddrControl = errors.New("control character in address")
	errAddrSyntax  = errors.New("malformed address")
	errAddrLength  = errors.New("address too long")
)

// RFC 5321 4.5.3.1.1 and 4.5.3.1.3 (kept in octets by RFC 6531): a local
// part holds at most 64 octets and a path at most 256, so a mailbox at
// most 254 (the path adds the angle brackets).
const (
	maxLocalOctets   = 64
	maxMailboxOctets = 254
)

// checkAddress validates a mailbox ("" and "postmaster" are the caller's
// business). utf8OK allows non-ASCII (SMTPUTF8 was given).
func checkAddress(addr string, utf8OK bool) error {
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c < 0x20 || c == 0x7f {
			return errAddrControl
		}
	}
	if !utf8.ValidString(addr) {
		return errAddrSyntax
	}
	if len(addr) > maxMailboxOctets {
		return errAddrLength
	}
	local, domain, err := splitMailbox(addr)
	if err != nil {
		return err
	}
	if len(local) > maxLocalOctets {
		return errAddrLength
	}
	if !validLocal(local, utf8OK) || !validDomain(domain, utf8OK) {
		return errAddrSyntax
	}
	// Policies match the domain as IDNA maps it (the domain the next hop
	// delivers to); one that does not map has no such domain, so no rule
	// could be sure to see it: refused rather than guessed.
	if _, err := policies.Domain(domain); err != nil {
		return fmt.Errorf("%w: %w", errAddrSyntax, err)
	}
	return nil
}

// splitMailbox splits at the '@' after the local part: the closing quote
// of a quoted-string, else the first '@'.
func splitMailbox(addr string) (local, domain string, err error) {
	end := 0
	if strings.HasPrefix(addr, `"`) {
		end = -1
		for i := 1; i < len(addr); i++ {
			if addr[i] == '\\' {
				i++
				continue
			}
			if addr[i] == '"' {
				end = i + 1
				break
			}
		}
		if end < 0 {
			return "", "", errAddrSyntax
		}
	}
	at := strings.IndexByte(addr[end:], '@')
	if at < 0 {
		return "", "", errAddrSyntax
	}
	return addr[:end+at], addr[end+at+1:], nil
}

// validLocal: Dot-string or Quoted-string (RFC 5321 4.1.2). Dots are not
// checked for position: real mailboxes such as "a..b" exist, and they
// carry no syntax of their own.
func validLocal(local string, utf8OK bool) bool {
	if local == "" {
		return false
	}
	if q, ok := strings.CutPrefix(local, `"`); ok {
		q, ok = strings.CutSuffix(q, `"`)
		if !ok {
			return false
		}
		for i := 0; i < len(q); i++ {
			c := q[i]
			switch {
			case c == '\\':
				// quoted-pairSMTP = %d92 %d32-126
				if i++; i >= len(q) || q[i] < 32 || q[i] > 126 {
					return false
				}
			case c == '"':
				return false
			case c >= 0x80:
				if !utf8OK {
					return false
				}
			case c < 32 || c > 126:
				return false
			}
		}
		return true
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if c >= 0x80 {
			if !utf8OK {
				return false
			}
			continue
		}
		if !isAtext(c) && c != '.' {
			return false
		}
	}
	return true
}

// isAtext is RFC 5322's atext.
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// validDomain: a host name (letters, digits, '-', '_' as seen in the wild,
// U-labels with SMTPUTF8) or an address literal in brackets.
func validDomain(d string, utf8OK bool) bool {
	if d == "" || len(d) > 255 {
		return false
	}
	if lit, ok := strings.CutPrefix(d, "["); ok {
		lit, ok = strings.CutSuffix(lit, "]")
		return ok && validAddressLiteral(lit)
	}
	for _, label := range strings.Split(strings.TrimSuffix(d, "."), ".") {
		if label == "" || len(label) > 63 && !utf8OK {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 0x80:
				if !utf8OK {
					return false
				}
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			default:
				return false
			}
		}
	}
	return true
}

// validAddressLiteral: the inside of an RFC 5321 address literal (4.1.3):
// a dotted IPv4 address, "IPv6:" and an IPv6 address, or a
// General-address-literal "tag:content". The content of the general form
// may not hold '@' (allowed by dcontent, but then the domain after the
// last '@' of the mailbox would not be its domain) or brackets.
func validAddressLiteral(lit string) bool {
	if a, err := netip.ParseAddr(lit); err == nil {
		return a.Is4() && !strings.Contains(lit, ":")
	}
	tag, content, ok := strings.Cut(lit, ":")
	if !ok || tag == "" || content == "" {
		return false
	}
	if strings.EqualFold(tag, "IPv6") {
		a, err := netip.ParseAddr(content)
		return err == nil && a.Is6() && a.Zone() == ""
	}
	// Standardized-tag = Ldh-str (not ending in '-').
	if tag[len(tag)-1] == '-' {
		return false
	}
	for i := 0; i < len(tag); i++ {
		if c := tag[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	for i := 0; i < len(content); i++ {
		// dcontent = %d33-90 / %d94-126, without '@'
		if c := content[i]; c < 33 || c > 126 || c == '[' || c == '\\' || c == ']' || c == '@' {
			return false
		}
	}
	return true
}

// maxORCPTOctets is RFC 3461's bound on an ORCPT parameter (4.2).
const maxORCPTOctets = 500

// validORCPT checks the decoded address of an ORCPT: it goes to the next
// hop and into delivery status notifications, so it must be UTF-8 text
// without control characters, whatever its type and encoding.
func validORCPT(orcpt string) bool {
	if len(orcpt) > maxORCPTOctets || !utf8.ValidString(orcpt) {
		return false
	}
	for _, r := range orcpt {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}
