package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// relayAndFindLink sends the message in path to the gateway (whose next
// hop is the capturing sink) and returns the transaction time and the
// download link the gateway put into the relayed mail.
func relayAndFindLink(g *gateway, s *sink, path string) (time.Duration, string, error) {
	before := s.captured()
	took, err := sendOne(g.smtpAddr, path)
	if err != nil {
		return 0, "", err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, f := range s.captured() {
			if slices.Contains(before, f) {
				continue
			}
			if link, ok := linkIn(f, g.linkURL); ok {
				return took, link, nil
			}
		}
		if time.Now().After(deadline) {
			return took, "", errors.New("no download link in the mail the sink captured")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// linkIn finds base/d/{token} in a captured mail; the notice is
// quoted-printable, so soft line breaks are undone first.
func linkIn(path, base string) (string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false
	}
	text := strings.NewReplacer("=\r\n", "", "=\n", "").Replace(string(b))
	re := regexp.MustCompile(regexp.QuoteMeta(base) + `/d/[A-Za-z0-9_-]{20,}`)
	m := re.FindString(text)
	return m, m != ""
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signedURL does what a recipient's browser does: GET the landing page
// (cookie and form field), POST the form, and returns the short-lived
// signed URL the 303 points to, absolute.
func signedURL(link string) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(link)
	if err != nil {
		return "", err
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("landing page: status %d", resp.StatusCode)
	}
	m := csrfRE.FindSubmatch(page)
	if m == nil {
		return "", errors.New("landing page has no csrf field")
	}
	resp, err = c.PostForm(link, url.Values{"csrf": {string(m[1])}})
	if err != nil {
		return "", err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return "", fmt.Errorf("download form: status %d", resp.StatusCode)
	}
	loc, err := resp.Location()
	if err != nil {
		return "", err
	}
	return loc.String(), nil
}

// download fetches a signed URL and checks size and SHA-256.
func download(u string, size int64, sha string) (time.Duration, error) {
	start := time.Now()
	resp, err := http.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("download: status %d", resp.StatusCode)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, resp.Body, make([]byte, 256<<10))
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("download: %w after %d bytes", err, n)
	}
	if n != size {
		return took, fmt.Errorf("download: %d bytes, want %d", n, size)
	}
	if got := fmt.Sprintf("%x", h.Sum(nil)); got != sha {
		return took, fmt.Errorf("download: SHA-256 %s, want %s", got, sha)
	}
	return took, nil
}
