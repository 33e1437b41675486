package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"mime"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Marker signs and recognises the X-Attachgate-Notice header that makes the
// gateway's own mail recognisable. The header carries an HMAC over the
// mail's kind, Message-ID, Date and To addresses, keyed from the key ring's
// MAC secret (shared by every instance), so a sender cannot forge it to
// slip mail past the policies, and a copied header only matches mail to
// the recipients of the original notice, within MaxAge of its Date.
type Marker struct {
	key []byte
	// MaxAge bounds how old a notice's Date may be for IsGatewayMail
	// (default 8 days: longer than any retry).
	MaxAge time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
}

// NewMarker derives the marker key from the key ring's MAC secret
// (vault.KeyRing.MACKey), separate from the key that signs download URLs.
func NewMarker(macKey []byte) *Marker {
	h := hmac.New(sha256.New, macKey)
	h.Write([]byte("attachgate notice marker v1"))
	return &Marker{key: h.Sum(nil), MaxAge: 8 * 24 * time.Hour, Now: time.Now}
}

// Value returns the X-Attachgate-Notice header value for a mail.
func (m *Marker) Value(kind, messageID string, date time.Time, to []string) string {
	return kind + "; v=1; mac=" + base64.RawURLEncoding.EncodeToString(m.sum(kind, messageID, date, to))
}

func (m *Marker) sum(kind, messageID string, date time.Time, to []string) []byte {
	addrs := make([]string, len(to))
	for i, a := range to {
		addrs[i] = strings.ToLower(a)
	}
	slices.Sort(addrs)
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte(kind + "\n" + messageID + "\n" + strconv.FormatInt(date.Unix(), 10) + "\n" + strings.Join(addrs, "\n")))
	return h.Sum(nil)
}

// HeaderGetter is the one method IsGatewayMail needs of a header; go-message
// (*textproto.Header, *mail.Header) and net/textproto.MIMEHeader have it.
type HeaderGetter interface {
	Get(key string) string
}

// IsGatewayMail reports whether a message with header h, arriving for the
// envelope recipients rcpts, is mail this gateway (or another instance with
// the same key ring) composed: Auto-Submitted set, a valid marker, a Date
// within MaxAge, and every envelope recipient among the To addresses the
// marker signs. The pipeline calls it before processing a message, so the
// gateway's own mail that comes back (a next hop routing it through the
// gateway again) is relayed as it is and never processed as outbound mail,
// which could otherwise loop.
func (m *Marker) IsGatewayMail(h HeaderGetter, rcpts []string) bool {
	as := strings.ToLower(strings.TrimSpace(strings.SplitN(h.Get(HeaderAutoSubmitted), ";", 2)[0]))
	if as == "" || as == "no" {
		return false
	}
	kind, params, err := mime.ParseMediaType(h.Get(HeaderNotice))
	if err != nil || params["v"] != "1" {
		return false
	}
	// Strict: one MAC has one spelling.
	mac, err := base64.RawURLEncoding.Strict().DecodeString(params["mac"])
	if err != nil {
		return false
	}
	id := strings.TrimSpace(h.Get("Message-Id"))
	if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, ">") {
		return false
	}
	id = id[1 : len(id)-1]
	date, err := mail.ParseDate(h.Get("Date"))
	if err != nil {
		return false
	}
	now := m.Now()
	if now.Sub(date) > m.MaxAge || date.Sub(now) > time.Hour {
		return false
	}
	list, err := mail.ParseAddressList(h.Get("To"))
	if err != nil || len(list) == 0 {
		return false
	}
	to := make([]string, len(list))
	for i, a := range list {
		to[i] = a.Address
	}
	if !hmac.Equal(mac, m.sum(kind, id, date, to)) {
		return false
	}
	if len(rcpts) == 0 {
		return false
	}
	for _, r := range rcpts {
		if !slices.ContainsFunc(to, func(a string) bool { return strings.EqualFold(a, r) }) {
			return false
		}
	}
	return true
}
