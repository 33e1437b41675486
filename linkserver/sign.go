package linkserver

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strconv"
	"time"
)

// signedFileURL returns the path a confirmed download redirects to:
//
//	/f/{linkID}/{name}?e={unix expiry}&s={base64url HMAC-SHA256(key, linkID|e)}
//
// The name is only there so browsers and download managers that take it
// from the URL agree with Content-Disposition; it is not signed and not
// trusted.
func (s *Server) signedFileURL(linkID, name string, expires time.Time) string {
	e := strconv.FormatInt(expires.Unix(), 10)
	return "/f/" + url.PathEscape(linkID) + "/" + url.PathEscape(urlFileName(name)) +
		"?e=" + e + "&s=" + base64.RawURLEncoding.EncodeToString(s.fileURLMAC(linkID, e))
}

// verifyFileURL checks the signature in constant time and that the URL has
// not expired (e ≥ now, to the second).
func (s *Server) verifyFileURL(linkID, e, sig string, now time.Time) bool {
	expires, err := strconv.ParseInt(e, 10, 64)
	if err != nil || strconv.FormatInt(expires, 10) != e {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return false
	}
	if !hmac.Equal(got, s.fileURLMAC(linkID, e)) {
		return false
	}
	return now.Unix() <= expires
}

// fileURLMAC is HMAC-SHA256 over "linkID|e". e is all digits, so the
// separator cannot be shifted into it.
func (s *Server) fileURLMAC(linkID, e string) []byte {
	mac := hmac.New(sha256.New, s.macKey)
	mac.Write([]byte(linkID))
	mac.Write([]byte{'|'})
	mac.Write([]byte(e))
	return mac.Sum(nil)
}

// urlFileName makes name usable as one path segment: ServeMux would
// clean "." and ".." away, and an empty segment matches no route.
func urlFileName(name string) string {
	switch name {
	case "", ".", "..":
		return "download"
	}
	return name
}
