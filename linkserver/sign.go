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
	return s.signedFileURLFor(linkID, name, expires, -1)
}

// signedFileURLFor is signedFileURL for a download by the verified
// recipient with index rcpt in the message's recipients (-1: none): the
// URL carries r={rcpt}, signed with the rest, so the file's download.ok
// names that recipient.
func (s *Server) signedFileURLFor(linkID, name string, expires time.Time, rcpt int) string {
	e := strconv.FormatInt(expires.Unix(), 10)
	q := "?e=" + e
	r := ""
	if rcpt >= 0 {
		r = strconv.Itoa(rcpt)
		q += "&r=" + r
	}
	return "/f/" + url.PathEscape(linkID) + "/" + url.PathEscape(urlFileName(name)) +
		q + "&s=" + base64.RawURLEncoding.EncodeToString(s.fileURLMAC(linkID, e, r))
}

// verifyFileURL checks the signature in constant time and that the URL has
// not expired (e ≥ now, to the second). rcpt is the r parameter ("" when
// absent).
func (s *Server) verifyFileURL(linkID, e, rcpt, sig string, now time.Time) bool {
	expires, err := strconv.ParseInt(e, 10, 64)
	if err != nil || strconv.FormatInt(expires, 10) != e {
		return false
	}
	if rcpt != "" {
		n, err := strconv.Atoi(rcpt)
		if err != nil || n < 0 || strconv.Itoa(n) != rcpt {
			return false
		}
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return false
	}
	if !hmac.Equal(got, s.fileURLMAC(linkID, e, rcpt)) {
		return false
	}
	return now.Unix() <= expires
}

// fileURLMAC is HMAC-SHA256 over "linkID|e", or "linkID|e|r" with a
// recipient. e and r are all digits, so the separators cannot be shifted
// into them, and a URL cannot lose or gain its r.
func (s *Server) fileURLMAC(linkID, e, rcpt string) []byte {
	mac := hmac.New(sha256.New, s.macKey)
	mac.Write([]byte(linkID))
	mac.Write([]byte{'|'})
	mac.Write([]byte(e))
	if rcpt != "" {
		mac.Write([]byte{'|'})
		mac.Write([]byte(rcpt))
	}
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
