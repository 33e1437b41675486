package policies

import (
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// domainProfile maps a domain the way an SMTPUTF8 next hop resolves it:
// UTS #46 mapping for lookup (full-width letters to ASCII, U+3002 and the
// other dots to '.', case folded), U-labels to A-labels, A-labels checked
// by decoding them. Underscores (seen in real host names, and accepted by
// smtpd) and "--" in labels (r3---sn-x.example) are allowed: they are
// valid DNS, and refusing them would refuse real mail.
var domainProfile = idna.New(
	idna.MapForLookup(),
	idna.BidiRule(),
	idna.StrictDomainName(false),
	idna.CheckHyphens(false),
)

// Domain returns the form of a domain that policies compare: ASCII
// (A-labels), lower case, without a trailing dot, so that every spelling
// a next hop delivers to the same domain (ｐａｒｔｎｅｒ.test,
// partner。test, Partner.Test., bücher.test and xn--bcher-kva.test) gives
// one string. An address literal ("[192.0.2.1]") is returned lower-cased.
// A domain that IDNA cannot map (disallowed code points, a broken A-label)
// is an error: smtpd refuses such an address at MAIL and RCPT, so that a
// policy never has to guess which domain it names.
func Domain(d string) (string, error) {
	d = strings.TrimSpace(d)
	if d == "" {
		return "", nil
	}
	if strings.HasPrefix(d, "[") {
		return strings.ToLower(d), nil
	}
	a, err := domainProfile.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("domain %q: %w", d, err)
	}
	return strings.TrimSuffix(a, "."), nil
}
