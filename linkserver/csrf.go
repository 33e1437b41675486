package linkserver

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
)

// Double-submit CSRF: the landing page sets a random cookie and puts the
// same value in the form; a cross-site form cannot read the cookie, so it
// cannot send the matching field. A script with a cookie jar can.
const (
	csrfCookie     = "ag_csrf"
	csrfField      = "csrf"
	csrfCookiePath = "/d/"
	csrfBytes      = 32
	// maxFormBytes is far more than the one hidden field needs.
	maxFormBytes = 4 << 10
)

var csrfEncodedLen = base64.RawURLEncoding.EncodedLen(csrfBytes)

// csrfToken returns the value for the landing page's cookie and form. An
// existing well-formed cookie is reused, so two landing pages open in two
// tabs both keep working.
func csrfToken(r *http.Request) string {
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
		Secure:   s.isHTTPS(r),
		SameSite: http.SameSiteStrictMode,
	})
}

// csrfValid checks the POST: no cross-origin browser request (Sec-Fetch-Site
// or Origin), and the form field equal to the cookie, in constant time.
func (s *Server) csrfValid(w http.ResponseWriter, r *http.Request) bool {
	if err := s.crossOrigin.Check(r); err != nil {
		return false
	}
	cookie, err := r.Cookie(csrfCookie)
	if err != nil || !wellFormedCSRF(cookie.Value) {
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return false
	}
	field := r.PostForm.Get(csrfField)
	return subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(field)) == 1
}
