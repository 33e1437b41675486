package linkserver

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"time"
)

// CSRF protection of the landing page's form, in three layers:
//
//  1. http.CrossOriginProtection refuses any POST a browser marks as
//     cross-site (Sec-Fetch-Site, or an Origin that is not ours).
//  2. The POST must carry the ag_csrf cookie. It is SameSite=Strict, so a
//     browser never sends it with a request another site starts; any
//     well-formed value will do, because its only job is to show the POST
//     comes from a browser that loaded one of our pages itself.
//  3. The form field is a token of this page: the time it was issued and
//     an HMAC over the link's token hash and that time. It proves the form
//     was served by us for this very link within formTokenTTL, and it does
//     not depend on the cookie's value.
//
// Before, the field had to equal the cookie (double submit). A landing
// page opened from webmail (target=_blank, another site) gets no Strict
// cookie, so the server minted a new one and overwrote it, and every tab
// opened earlier answered Download with 403. With the field independent
// of the cookie's value, every landing page the recipient opened keeps
// working, whatever order the tabs are used in; overwriting the cookie
// changes nothing. What the old scheme added on top (a per-browser secret)
// protected nothing here: forging the POST needs the link's token, and
// whoever holds that can download the file without any browser.
const (
	csrfCookie     = "ag_csrf"
	csrfField      = "csrf"
	csrfCookiePath = "/d/"
	csrfBytes      = 32
	// maxFormBytes is far more than the one hidden field needs.
	maxFormBytes = 4 << 10
	// formTokenTTL is how long a landing page's form stays valid: a tab
	// left open over night still works, and Back works.
	formTokenTTL = 24 * time.Hour
	// formTokenSkew tolerates clocks of instances sharing a store.
	formTokenSkew = 5 * time.Minute
	formMACLen    = 32
)

var (
	csrfEncodedLen      = base64.RawURLEncoding.EncodedLen(csrfBytes)
	formTokenEncodedLen = base64.RawURLEncoding.EncodedLen(8 + formMACLen)
)

// csrfCookieValue returns the value for the landing page's cookie: an
// existing well-formed cookie is kept, otherwise a new random one.
func csrfCookieValue(r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && wellFormedCSRF(c.Value) {
		return c.Value
	}
	b := make([]byte, csrfBytes)
	_, _ = rand.Read(b) // never fails; see crypto/rand.Read
	return base64.RawURLEncoding.EncodeToString(b)
}

func wellFormedCSRF(v string) bool {
	if len(v) != csrfEncodedLen {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(v)
	return err == nil
}

func (s *Server) setCSRFCookie(w http.ResponseWriter, r *http.Request, value string) {
	http.SetCookie(w, &http.Cookie{
		Name:     csrfCookie,
		Value:    value,
		Path:     csrfCookiePath,
		HttpOnly: true,
		Secure:   s.secure(r),
		SameSite: http.SameSiteStrictMode,
	})
}

// formToken is the landing page's hidden field for the link whose token
// hashes to tokenHash, issued at now.
func (s *Server) formToken(tokenHash []byte, now time.Time) string {
	b := make([]byte, 8, 8+formMACLen)
	binary.BigEndian.PutUint64(b, uint64(now.Unix()))
	b = append(b, s.formMAC(tokenHash, b[:8])...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// formMAC is HMAC-SHA256(key, "attachgate form\x00" | tokenHash | issued).
// The label keeps it apart from the signed file URLs made with the same
// key; tokenHash has a fixed length, so the parts cannot shift.
func (s *Server) formMAC(tokenHash, issued []byte) []byte {
	mac := hmac.New(sha256.New, s.macKey)
	mac.Write([]byte("attachgate form\x00"))
	mac.Write(tokenHash)
	mac.Write(issued)
	return mac.Sum(nil)
}

// validFormToken checks a form field for the link in constant time and
// that it was issued within formTokenTTL of now.
func (s *Server) validFormToken(field string, tokenHash []byte, now time.Time) bool {
	if len(field) != formTokenEncodedLen {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(field)
	if err != nil || len(b) != 8+formMACLen {
		return false
	}
	if !hmac.Equal(b[8:], s.formMAC(tokenHash, b[:8])) {
		return false
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	return !issued.After(now.Add(formTokenSkew)) && now.Sub(issued) <= formTokenTTL
}

// csrfValid checks the POST: no cross-origin browser request, our cookie
// present, and the form field issued by us for this link. The body was
// capped by limitBodies.
func (s *Server) csrfValid(r *http.Request, tokenHash []byte, now time.Time) bool {
	if err := s.crossOrigin.Check(r); err != nil {
		return false
	}
	cookie, err := r.Cookie(csrfCookie)
	if err != nil || !wellFormedCSRF(cookie.Value) {
		return false
	}
	if err := r.ParseForm(); err != nil {
		return false
	}
	return s.validFormToken(r.PostForm.Get(csrfField), tokenHash, now)
}
