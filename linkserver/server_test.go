package linkserver

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attachgate/attachgate/audit"
)

// testContent returns n deterministic pseudo-random bytes.
func testContent(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1, 2, 3})
	_, _ = r.Read(b)
	return b
}

func TestLandingPageShowsFile(t *testing.T) {
	h := newHarness(t)
	content := testContent(1536)
	l := h.addLink(linkSpec{name: "report.pdf", content: content, sender: "alice@example.com", maxDownloads: 3})

	resp, body := h.do(h.browser(true), http.MethodGet, "/d/"+l.token, nil, nil)
	mustStatus(t, resp, http.StatusOK)
	page := html.UnescapeString(string(body))
	sum := sha256.Sum256(content)
	for _, want := range []string{
		`<html lang="en">`,
		"report.pdf",
		"1.5 KiB (1,536 bytes)",
		"alice@example.com",
		groupedHex(sum[:]),
		"Monday, 9 March 2026, 19:00 JST (UTC+09:00)",
		`datetime="2026-03-09T19:00:00+09:00"`,
		"<dd>3</dd>", // downloads left
		`action="/d/` + l.token + `"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("landing page lacks %q", want)
		}
	}
	if n := strings.Count(page, "<form"); n != 1 {
		t.Errorf("landing page has %d forms, want 1", n)
	}
	if n := strings.Count(page, `<form method="post"`); n != 1 {
		t.Errorf("landing page has %d POST forms, want 1", n)
	}

	hdr := resp.Header
	for name, want := range map[string]string{
		"X-Frame-Options":  "DENY",
		"Referrer-Policy":  "no-referrer",
		"Cache-Control":    "no-store",
		"Content-Type":     "text/html; charset=utf-8",
		"Content-Language": "en",
	} {
		if got := hdr.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	csp := hdr.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'", "style-src 'sha256-"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP allows unsafe-inline: %q", csp)
	}

	var csrf *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == csrfCookie {
			csrf = c
		}
	}
	if csrf == nil {
		t.Fatal("no ag_csrf cookie")
	}
	if !csrf.HttpOnly || csrf.SameSite != http.SameSiteStrictMode || csrf.Path != "/d/" || csrf.Secure {
		t.Errorf("cookie = %+v, want HttpOnly, SameSite=Strict, Path=/d/, not Secure over plain HTTP", csrf)
	}
	if strings.Contains(page, csrf.Value) {
		t.Error("the page carries the cookie's value; the form token must not depend on it")
	}

	viewed := h.events.ofType(audit.TypeLinkViewed)
	if len(viewed) != 1 {
		t.Fatalf("%d link.viewed events, want 1", len(viewed))
	}
	e := viewed[0]
	if e.LinkID != l.id || e.FileID != l.file.ID || e.FileName != "report.pdf" || e.MessageID != l.file.MessageID ||
		e.ClientAddr != "127.0.0.1" || e.UserAgent == "" || e.Actor != "web" {
		t.Errorf("link.viewed = %+v", e)
	}
}

// The inline style is allowed by hash; the hash must be of the bytes the
// page really carries.
func TestStyleHashMatchesCSP(t *testing.T) {
	h := newHarness(t)
	l := h.addLink(linkSpec{name: "a.txt", content: []byte("a")})
	resp, body := h.do(h.browser(true), http.MethodGet, "/d/"+l.token, nil, nil)
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindSubmatch(body)
	if m == nil {
		t.Fatal("no <style> element")
	}
	sum := sha256.Sum256(m[1])
	want := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, want) {
		t.Errorf("CSP %q does not allow the page's style (%s)", csp, want)
	}
}

func TestLandingGetAndHeadDoNotCount(t *testing.T) {
	h := newHarness(t)
	l := h.addLink(linkSpec{name: "a.bin", content: testContent(100), maxDownloads: 1})
	c := h.browser(true)
	for range 3 {
		resp, _ := h.do(c, http.MethodGet, "/d/"+l.token, nil, nil)
		mustStatus(t, resp, http.StatusOK)
		resp, body := h.do(c, http.MethodHead, "/d/"+l.token, nil, nil)
		mustStatus(t, resp, http.StatusOK)
		if len(body) != 0 {
			t.Errorf("HEAD returned %d body bytes", len(body))
		}
	}
	if n := h.downloads(l.id); n != 0 {
		t.Errorf("downloads = %d after GET and HEAD, want 0", n)
	}
	// The one allowed download is still there.
	if loc := h.signedURL(l.token); !strings.HasPrefix(loc, "/f/"+l.id+"/") {
		t.Errorf("Location = %q", loc)
	}
}

func TestDownload(t *testing.T) {
	tests := []struct {
		name            string
		fileName        string
		wantDisposition string
	}{
		{"ascii", "report-2026.pdf", `attachment; filename="report-2026.pdf"; filename*=UTF-8''report-2026.pdf`},
		{"japanese", "見積書 2026.pdf",
			`attachment; filename="___ 2026.pdf"; filename*=UTF-8''%E8%A6%8B%E7%A9%8D%E6%9B%B8%202026.pdf`},
		{"quote and backslash", `a"b\c.txt`, `attachment; filename="a_b_c.txt"; filename*=UTF-8''a%22b%5Cc.txt`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			content := testContent(200_000)
			l := h.addLink(linkSpec{name: tt.fileName, content: content})

			// Step by step, as a script with a cookie jar would.
			c := h.browser(false)
			action, csrf := h.landing(c, l.token)
			resp, _ := h.submit(c, action, csrf)
			mustStatus(t, resp, http.StatusSeeOther)
			loc := resp.Header.Get("Location")
			if !strings.HasPrefix(loc, "/f/"+l.id+"/"+url.PathEscape(tt.fileName)+"?e=") {
				t.Errorf("Location = %q", loc)
			}
			if n := h.downloads(l.id); n != 1 {
				t.Errorf("downloads = %d after POST, want 1", n)
			}
			if got := len(h.events.ofType(audit.TypeDownloadOK)); got != 0 {
				t.Errorf("%d download.ok events before the file was fetched", got)
			}

			resp, body := h.do(c, http.MethodGet, loc, http.Header{"User-Agent": {"test-agent/1.0"}}, nil)
			mustStatus(t, resp, http.StatusOK)
			if !bytes.Equal(body, content) {
				t.Fatalf("body: %d bytes differ from the %d stored", len(body), len(content))
			}
			if got := resp.Header.Get("Content-Disposition"); got != tt.wantDisposition {
				t.Errorf("Content-Disposition = %q, want %q", got, tt.wantDisposition)
			}
			disposition, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
			if err != nil || disposition != "attachment" || params["filename"] != tt.fileName {
				t.Errorf("parsed Content-Disposition = %q %v %v, want attachment with %q", disposition, params, err, tt.fileName)
			}
			sum := sha256.Sum256(content)
			for name, want := range map[string]string{
				"Content-Type":            "application/octet-stream",
				"X-Content-Type-Options":  "nosniff",
				"Cache-Control":           "private, no-store",
				"Content-Security-Policy": "default-src 'none'; sandbox",
				"Content-Length":          strconv.Itoa(len(content)),
				"Accept-Ranges":           "bytes",
				"Etag":                    fmt.Sprintf(`"sha256:%x"`, sum),
			} {
				if got := resp.Header.Get(name); got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}

			ok := h.events.ofType(audit.TypeDownloadOK)
			if len(ok) != 1 {
				t.Fatalf("%d download.ok events, want 1", len(ok))
			}
			if e := ok[0]; e.LinkID != l.id || e.FileID != l.file.ID || e.FileName != tt.fileName ||
				e.ClientAddr != "127.0.0.1" || e.UserAgent != "test-agent/1.0" || e.MessageID != l.file.MessageID {
				t.Errorf("download.ok = %+v", e)
			}
		})
	}
}

// A client that follows redirects on its own ends at the file.
func TestDownloadFollowingRedirects(t *testing.T) {
	h := newHarness(t)
	content := testContent(5000)
	l := h.addLink(linkSpec{name: "x.bin", content: content})
	c := h.browser(true)
	action, csrf := h.landing(c, l.token)
	resp, body := h.submit(c, action, csrf)
	mustStatus(t, resp, http.StatusOK)
	if !bytes.Equal(body, content) {
		t.Error("body differs")
	}
}

func TestRange(t *testing.T) {
	h := newHarness(t)
	content := testContent(200_000)
	l := h.addLink(linkSpec{name: "big.bin", content: content})
	loc := h.signedURL(l.token)
	sum := sha256.Sum256(content)
	etag := fmt.Sprintf(`"sha256:%x"`, sum)
	lastModified := testStart.UTC().Format(http.TimeFormat)

	tests := []struct {
		name       string
		header     http.Header
		wantStatus int
		from, to   int // inclusive slice of content; to < 0 = whole file
		wantOK     bool
	}{
		{"first bytes", http.Header{"Range": {"bytes=0-99"}}, 206, 0, 99, true},
		{"across 64 KiB chunk boundary", http.Header{"Range": {"bytes=65500-65600"}}, 206, 65500, 65600, true},
		{"across second boundary to end", http.Header{"Range": {"bytes=131000-"}}, 206, 131000, 199_999, true},
		{"suffix", http.Header{"Range": {"bytes=-10"}}, 206, 199_990, 199_999, true},
		{"If-Range matching ETag", http.Header{"Range": {"bytes=70000-70009"}, "If-Range": {etag}}, 206, 70000, 70009, true},
		{"If-Range matching date", http.Header{"Range": {"bytes=10-19"}, "If-Range": {lastModified}}, 206, 10, 19, true},
		{"If-Range stale ETag sends whole file", http.Header{"Range": {"bytes=0-9"}, "If-Range": {`"sha256:00"`}}, 200, 0, -1, true},
		{"unsatisfiable", http.Header{"Range": {"bytes=300000-"}}, 416, 0, 0, false},
		{"If-None-Match", http.Header{"If-None-Match": {etag}}, 304, 0, 0, false},
	}
	c := h.browser(false)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.events.ofType(audit.TypeDownloadOK))
			resp, body := h.do(c, http.MethodGet, loc, tt.header, nil)
			mustStatus(t, resp, tt.wantStatus)
			switch tt.wantStatus {
			case 206:
				if !bytes.Equal(body, content[tt.from:tt.to+1]) {
					t.Errorf("206 body of %d bytes is not content[%d:%d]", len(body), tt.from, tt.to+1)
				}
				want := fmt.Sprintf("bytes %d-%d/%d", tt.from, tt.to, len(content))
				if got := resp.Header.Get("Content-Range"); got != want {
					t.Errorf("Content-Range = %q, want %q", got, want)
				}
			case 200:
				if !bytes.Equal(body, content) {
					t.Error("200 body differs from content")
				}
			}
			got := len(h.events.ofType(audit.TypeDownloadOK)) - before
			if want := map[bool]int{true: 1, false: 0}[tt.wantOK]; got != want {
				t.Errorf("%d download.ok events, want %d", got, want)
			}
		})
	}

	t.Run("HEAD", func(t *testing.T) {
		before := len(h.events.ofType(audit.TypeDownloadOK))
		resp, body := h.do(c, http.MethodHead, loc, nil, nil)
		mustStatus(t, resp, http.StatusOK)
		if len(body) != 0 || resp.Header.Get("Content-Length") != strconv.Itoa(len(content)) {
			t.Errorf("HEAD: %d body bytes, Content-Length %q", len(body), resp.Header.Get("Content-Length"))
		}
		if got := len(h.events.ofType(audit.TypeDownloadOK)) - before; got != 0 {
			t.Errorf("HEAD recorded %d download.ok events", got)
		}
	})
	if n := h.downloads(l.id); n != 1 {
		t.Errorf("downloads = %d after one POST and many GETs, want 1", n)
	}
}

func TestLinkStates(t *testing.T) {
	const expiresIn = time.Hour
	tests := []struct {
		name       string
		spec       linkSpec
		prepare    func(t *testing.T, h *harness, l testLink) // before GET and POST
		token      func(l testLink) string
		wantGet    int
		wantPost   int
		wantReason string
		wantText   string
	}{
		{
			name:     "one second before expiry",
			spec:     linkSpec{expiresIn: expiresIn},
			prepare:  func(_ *testing.T, h *harness, _ testLink) { h.clock.Set(testStart.Add(expiresIn - time.Second)) },
			wantGet:  200,
			wantPost: 303,
		},
		{
			name:       "at expiry",
			spec:       linkSpec{expiresIn: expiresIn},
			prepare:    func(_ *testing.T, h *harness, _ testLink) { h.clock.Set(testStart.Add(expiresIn)) },
			wantGet:    410,
			wantPost:   410,
			wantReason: "expired",
			wantText:   "This link expired on Monday, 2 March 2026, 20:00 JST (UTC+09:00).",
		},
		{
			name:       "file expires before its link",
			spec:       linkSpec{expiresIn: expiresIn, fileExpires: expiresIn / 2},
			prepare:    func(_ *testing.T, h *harness, _ testLink) { h.clock.Set(testStart.Add(expiresIn / 2)) },
			wantGet:    410,
			wantPost:   410,
			wantReason: "expired",
			wantText:   "This link expired on Monday, 2 March 2026, 19:30 JST (UTC+09:00).",
		},
		{
			name: "revoked",
			prepare: func(t *testing.T, h *harness, l testLink) {
				if err := h.store.RevokeLink(t.Context(), l.id, testStart); err != nil {
					t.Fatal(err)
				}
			},
			wantGet:    410,
			wantPost:   410,
			wantReason: "revoked",
			wantText:   "The sender withdrew this link on Monday, 2 March 2026, 19:00 JST (UTC+09:00)",
		},
		{
			name:       "unknown token",
			token:      func(testLink) string { return "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" },
			wantGet:    404,
			wantPost:   404,
			wantReason: "unknown",
			wantText:   "This link does not exist.",
		},
		{
			name:       "malformed token",
			token:      func(testLink) string { return "not*a*token" },
			wantGet:    404,
			wantPost:   404,
			wantReason: "unknown",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.spec.name, tt.spec.content = "f.txt", []byte("hello")
			l := h.addLink(tt.spec)
			c := h.browser(false)
			// The form of this link's page, taken while it was live.
			_, csrf := h.landing(c, l.token)
			if tt.prepare != nil {
				tt.prepare(t, h, l)
			}
			token := l.token
			if tt.token != nil {
				token = tt.token(l)
			}
			resp, body := h.do(c, http.MethodGet, "/d/"+token, nil, nil)
			mustStatus(t, resp, tt.wantGet)
			if !strings.Contains(html.UnescapeString(string(body)), tt.wantText) {
				t.Errorf("GET page lacks %q", tt.wantText)
			}
			// POST the form the page had while the link was live.
			resp, body = h.submit(c, "/d/"+token, csrf)
			mustStatus(t, resp, tt.wantPost)
			if !strings.Contains(html.UnescapeString(string(body)), tt.wantText) {
				t.Errorf("POST page lacks %q", tt.wantText)
			}
			if tt.wantReason != "" {
				denied := h.events.ofType(audit.TypeDownloadDenied)
				if len(denied) != 1 || denied[0].Reason != tt.wantReason {
					t.Fatalf("download.denied = %+v, want one with reason %q", denied, tt.wantReason)
				}
				if tt.wantReason != "unknown" && denied[0].LinkID != l.id {
					t.Errorf("denied event names link %q, want %q", denied[0].LinkID, l.id)
				}
				if tt.wantReason == "unknown" && denied[0].LinkID != "" {
					t.Errorf("unknown-token denial names link %q", denied[0].LinkID)
				}
			}
		})
	}
}

func TestDownloadLimit(t *testing.T) {
	h := newHarness(t)
	l := h.addLink(linkSpec{name: "once.txt", content: []byte("once"), maxDownloads: 1})
	c := h.browser(false)
	_, csrf := h.landing(c, l.token)
	h.signedURL(l.token)
	// The landing page already says so...
	resp, _ := h.do(c, http.MethodGet, "/d/"+l.token, nil, nil)
	mustStatus(t, resp, http.StatusGone)
	// ...and a POST of the form shown before is refused.
	resp, body := h.submit(c, "/d/"+l.token, csrf)
	mustStatus(t, resp, http.StatusGone)
	if !strings.Contains(string(body), "as many times as allowed") {
		t.Errorf("410 page: %s", body)
	}
	if n := h.downloads(l.id); n != 1 {
		t.Errorf("downloads = %d, want 1", n)
	}
	denied := h.events.ofType(audit.TypeDownloadDenied)
	if len(denied) != 1 || denied[0].Reason != "limit" {
		t.Errorf("download.denied = %+v, want reason limit", denied)
	}
}

func TestConcurrentPostsOnSingleUseLink(t *testing.T) {
	h := newHarness(t)
	l := h.addLink(linkSpec{name: "race.txt", content: []byte("race"), maxDownloads: 1})
	c := h.browser(false)
	action, csrf := h.landing(c, l.token)
	cookie := jarCookie(t, c, h.http.URL)

	const posts = 16
	statuses := make(chan int, posts)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range posts {
		wg.Go(func() {
			<-start
			req, err := http.NewRequest(http.MethodPost, h.http.URL+action, strings.NewReader(url.Values{csrfField: {csrf}}.Encode()))
			if err != nil {
				t.Error(err)
				return
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.AddCookie(&http.Cookie{Name: csrfCookie, Value: cookie})
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	if counts[http.StatusSeeOther] != 1 || counts[http.StatusGone] != posts-1 {
		t.Errorf("statuses = %v, want exactly one 303 and %d 410", counts, posts-1)
	}
	if n := h.downloads(l.id); n != 1 {
		t.Errorf("downloads = %d, want 1", n)
	}
}

func TestCSRF(t *testing.T) {
	tests := []struct {
		name    string
		request func(h *harness, token, csrf, cookie string) *http.Request
	}{
		{"no cookie", func(h *harness, token, csrf, cookie string) *http.Request {
			return formPost(h, token, url.Values{csrfField: {csrf}}, "")
		}},
		{"no field", func(h *harness, token, csrf, cookie string) *http.Request {
			return formPost(h, token, url.Values{}, cookie)
		}},
		{"field differs", func(h *harness, token, csrf, cookie string) *http.Request {
			other := []byte(csrf)
			other[0] ^= 1
			return formPost(h, token, url.Values{csrfField: {string(other)}}, cookie)
		}},
		{"cookie and field equal but not ours", func(h *harness, token, _, _ string) *http.Request {
			return formPost(h, token, url.Values{csrfField: {"x"}}, "x")
		}},
		{"form of another link", func(h *harness, token, _, cookie string) *http.Request {
			other := h.addLink(linkSpec{name: "other.txt", content: []byte("other")})
			_, otherCSRF := h.landing(h.browser(false), other.token)
			return formPost(h, token, url.Values{csrfField: {otherCSRF}}, cookie)
		}},
		{"form older than a day", func(h *harness, token, csrf, cookie string) *http.Request {
			h.clock.Set(testStart.Add(formTokenTTL + time.Minute))
			return formPost(h, token, url.Values{csrfField: {csrf}}, cookie)
		}},
		{"cross-site browser request", func(h *harness, token, csrf, cookie string) *http.Request {
			req := formPost(h, token, url.Values{csrfField: {csrf}}, cookie)
			req.Header.Set("Sec-Fetch-Site", "cross-site")
			return req
		}},
		{"foreign Origin", func(h *harness, token, csrf, cookie string) *http.Request {
			req := formPost(h, token, url.Values{csrfField: {csrf}}, cookie)
			req.Header.Set("Origin", "https://evil.example")
			return req
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			l := h.addLink(linkSpec{name: "f.txt", content: []byte("secret")})
			c := h.browser(false)
			_, csrf := h.landing(c, l.token)
			resp, err := http.DefaultTransport.RoundTrip(tt.request(h, l.token, csrf, jarCookie(t, c, h.http.URL)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status %d, want 403", resp.StatusCode)
			}
			if n := h.downloads(l.id); n != 0 {
				t.Errorf("downloads = %d after refused POST", n)
			}
			denied := h.events.ofType(audit.TypeDownloadDenied)
			if len(denied) != 1 || denied[0].Reason != "csrf" || denied[0].LinkID != l.id {
				t.Errorf("download.denied = %+v, want one with reason csrf", denied)
			}
		})
	}
}

// A same-origin browser POST passes the cross-origin check.
func TestSameOriginBrowserPost(t *testing.T) {
	h := newHarness(t)
	l := h.addLink(linkSpec{name: "f.txt", content: []byte("ok")})
	c := h.browser(false)
	_, csrf := h.landing(c, l.token)
	req := formPost(h, l.token, url.Values{csrfField: {csrf}}, jarCookie(t, c, h.http.URL))
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", h.http.URL)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mustStatus(t, resp, http.StatusSeeOther)
}

func formPost(h *harness, token string, form url.Values, cookie string) *http.Request {
	req, err := http.NewRequest(http.MethodPost, h.http.URL+"/d/"+token, strings.NewReader(form.Encode()))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: csrfCookie, Value: cookie})
	}
	return req
}

func TestSignedURL(t *testing.T) {
	h := newHarness(t)
	l := h.addLink(linkSpec{name: "f.txt", content: []byte("signed")})
	loc := h.signedURL(l.token)
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	e, _ := strconv.ParseInt(q.Get("e"), 10, 64)
	if want := testStart.Add(defaultSignedURLTTL).Unix(); e != want {
		t.Errorf("e = %d, want now + 2 min = %d", e, want)
	}
	with := func(key, value string) string {
		q := u.Query()
		if value == "" {
			q.Del(key)
		} else {
			q.Set(key, value)
		}
		return u.Path + "?" + q.Encode()
	}
	flipped := []byte(q.Get("s"))
	flipped[3] ^= 1
	other := h.addLink(linkSpec{name: "g.txt", content: []byte("other")})

	tests := []struct {
		name  string
		path  string
		clock time.Time
		want  int
	}{
		{"valid at issue", loc, testStart, 200},
		{"valid at the last second", loc, time.Unix(e, 999_999_999), 200},
		{"timed out", loc, time.Unix(e+1, 0), 403},
		{"signature flipped", with("s", string(flipped)), testStart, 403},
		{"signature missing", with("s", ""), testStart, 403},
		{"expiry extended", with("e", strconv.FormatInt(e+3600, 10)), testStart, 403},
		{"expiry with leading zero", with("e", "0"+q.Get("e")), testStart, 403},
		{"other link's id", strings.Replace(loc, l.id, other.id, 1), testStart, 403},
	}
	c := h.browser(false)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.clock.Set(tt.clock)
			resp, body := h.do(c, http.MethodGet, tt.path, nil, nil)
			mustStatus(t, resp, tt.want)
			if tt.want == 403 && !strings.Contains(string(body), "timed out") {
				t.Errorf("403 page: %s", body)
			}
		})
	}

	t.Run("revoked after the POST", func(t *testing.T) {
		h.clock.Set(testStart)
		if err := h.store.RevokeLink(t.Context(), l.id, testStart); err != nil {
			t.Fatal(err)
		}
		resp, _ := h.do(c, http.MethodGet, loc, nil, nil)
		mustStatus(t, resp, http.StatusGone)
	})
}

func TestLanguage(t *testing.T) {
	tests := []struct {
		acceptLanguage string
		wantLang       string
		wantLanding    string
		wantGone       string
	}{
		{"", "en", "File download", "This link expired on Monday, 2 March 2026, 20:00 JST"},
		{"ja", "ja", "ファイルのダウンロード", "このリンクは 2026年3月2日(月) 20:00 JST (UTC+09:00) に有効期限が切れました。"},
		{"ja-JP,en;q=0.5", "ja", "2026年3月2日(月) 20:00 JST (UTC+09:00)", "送信者に再送を依頼してください"},
		{"en-US,ja;q=0.9", "en", "Available until", "ask the sender to send it again"},
		{"fr-FR", "en", "File download", "This link expired on"},
		{";;;garbage", "en", "File download", "This link expired on"},
	}
	h := newHarness(t)
	l := h.addLink(linkSpec{name: "f.txt", content: []byte("x"), expiresIn: time.Hour})
	c := h.browser(false)
	for _, tt := range tests {
		t.Run(tt.acceptLanguage, func(t *testing.T) {
			header := http.Header{"Accept-Language": {tt.acceptLanguage}}
			h.clock.Set(testStart)
			resp, body := h.do(c, http.MethodGet, "/d/"+l.token, header, nil)
			mustStatus(t, resp, http.StatusOK)
			page := html.UnescapeString(string(body))
			if !strings.Contains(page, `<html lang="`+tt.wantLang+`">`) || !strings.Contains(page, tt.wantLanding) {
				t.Errorf("landing page not in %s or lacks %q", tt.wantLang, tt.wantLanding)
			}
			if resp.Header.Get("Vary") != "Accept-Language" {
				t.Errorf("Vary = %q", resp.Header.Get("Vary"))
			}
			h.clock.Set(testStart.Add(time.Hour))
			resp, body = h.do(c, http.MethodGet, "/d/"+l.token, header, nil)
			mustStatus(t, resp, http.StatusGone)
			if page := html.UnescapeString(string(body)); !strings.Contains(page, `<html lang="`+tt.wantLang+`">`) || !strings.Contains(page, tt.wantGone) {
				t.Errorf("410 page lacks lang %s or %q", tt.wantLang, tt.wantGone)
			}
		})
	}
}

// Every error page exists in both languages with its own status.
func TestErrorPagesInBothLanguages(t *testing.T) {
	h := newHarness(t)
	for kind, status := range pageStatus {
		for _, lang := range []string{"en", "ja"} {
			r, _ := http.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Accept-Language", lang)
			w := httptest.NewRecorder()
			h.server.renderError(w, r, kind)
			if w.Code != status {
				t.Errorf("page %d: status %d, want %d", kind, w.Code, status)
			}
			body := w.Body.String()
			text := catalogFor(r).errors[kind]
			if text.Title == "" || text.Message == "" {
				t.Errorf("page %d in %s has no text", kind, lang)
			}
			if !strings.Contains(body, `<html lang="`+lang+`">`) || !strings.Contains(body, text.Message) {
				t.Errorf("page %d in %s: %s", kind, lang, body)
			}
		}
	}
}

func TestNamesAreEscaped(t *testing.T) {
	h := newHarness(t)
	l := h.addLink(linkSpec{
		name:    `<script>alert(1)</script>.html`,
		sender:  `"<img src=x onerror=alert(1)>"@example.com`,
		content: []byte("<script>alert(1)</script>"),
	})
	_, body := h.do(h.browser(false), http.MethodGet, "/d/"+l.token, nil, nil)
	page := string(body)
	if strings.Contains(page, "<script>") || strings.Contains(page, "<img") {
		t.Fatalf("unescaped markup in page: %s", page)
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;.html") {
		t.Errorf("escaped name missing")
	}
	loc := h.signedURL(l.token)
	resp, _ := h.do(h.browser(false), http.MethodGet, loc, nil, nil)
	mustStatus(t, resp, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("an .html file is served as %q", ct)
	}
}

func TestStoreDownGives503(t *testing.T) {
	h := newHarness(t)
	l := h.addLink(linkSpec{name: "f.txt", content: []byte("x")})
	loc := h.signedURL(l.token)
	h.store.Close()
	c := h.browser(false)
	for _, tt := range []struct{ method, path string }{
		{http.MethodGet, "/d/" + l.token},
		{http.MethodPost, "/d/" + l.token},
		{http.MethodGet, loc},
	} {
		resp, body := h.do(c, tt.method, tt.path, nil, nil)
		mustStatus(t, resp, http.StatusServiceUnavailable)
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s: no Retry-After", tt.method, tt.path)
		}
		if page := string(body); !strings.Contains(page, "temporarily unavailable") || strings.Contains(page, "sql") {
			t.Errorf("%s %s: 503 page: %s", tt.method, tt.path, page)
		}
	}
	if !strings.Contains(h.logs.String(), "store unavailable") {
		t.Errorf("store failure not logged: %s", h.logs.String())
	}
}

func TestAuditFailureWithholdsPageAndFile(t *testing.T) {
	h := newHarness(t)
	content := testContent(1000)
	l := h.addLink(linkSpec{name: "f.txt", content: content})
	loc := h.signedURL(l.token)
	h.events.fail(errAuditDown)
	c := h.browser(false)
	resp, _ := h.do(c, http.MethodGet, "/d/"+l.token, nil, nil)
	mustStatus(t, resp, http.StatusServiceUnavailable)
	resp, body := h.do(c, http.MethodGet, loc, nil, nil)
	mustStatus(t, resp, http.StatusServiceUnavailable)
	if bytes.Contains(body, content[:100]) || resp.Header.Get("Content-Disposition") != "" {
		t.Error("file content or headers sent although the download was not audited")
	}
}

// Tokens are secrets: they must appear in neither logs nor audit events.
func TestTokensStayOutOfLogsAndAudit(t *testing.T) {
	h := newHarness(t)
	l := h.addLink(linkSpec{name: "f.txt", content: []byte("x"), maxDownloads: 1})
	loc := h.signedURL(l.token)
	h.do(h.browser(false), http.MethodGet, loc, nil, nil)
	h.do(h.browser(false), http.MethodGet, "/d/"+l.token, nil, nil) // 410, audited
	h.store.Close()
	h.do(h.browser(false), http.MethodGet, "/d/"+l.token, nil, nil) // 503, logged
	if strings.Contains(h.logs.String(), l.token) {
		t.Error("token in log")
	}
	for _, e := range h.events.all() {
		if strings.Contains(fmt.Sprintf("%+v", e), l.token) {
			t.Errorf("token in audit event %+v", e)
		}
	}
	if len(h.events.all()) < 3 {
		t.Errorf("only %d events recorded", len(h.events.all()))
	}
}

func TestMiscRoutes(t *testing.T) {
	h := newHarness(t)
	c := h.browser(false)
	tests := []struct {
		method, path string
		want         int
		wantBody     string
	}{
		{http.MethodGet, "/healthz", 200, "ok"},
		{http.MethodHead, "/healthz", 200, ""},
		{http.MethodGet, "/", 404, "This link does not exist."},
		{http.MethodGet, "/d/", 404, "This link does not exist."},
		{http.MethodPut, "/d/abc", 405, "not supported"},
		{http.MethodDelete, "/f/x/y", 405, "not supported"},
	}
	for _, tt := range tests {
		resp, body := h.do(c, tt.method, tt.path, nil, nil)
		if resp.StatusCode != tt.want || !strings.Contains(string(body), tt.wantBody) {
			t.Errorf("%s %s = %d %q, want %d with %q", tt.method, tt.path, resp.StatusCode, body, tt.want, tt.wantBody)
		}
	}
}

func TestHandlerPanicGives500(t *testing.T) {
	h := newHarness(t)
	handler := h.server.recoverPanics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	w := httptest.NewRecorder()
	r, _ := http.NewRequest(http.MethodGet, "/d/x", nil)
	handler.ServeHTTP(w, r)
	if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "boom") || strings.Contains(w.Body.String(), "goroutine") {
		t.Errorf("panic answered %d %q", w.Code, w.Body.String())
	}
	if !strings.Contains(h.logs.String(), "boom") {
		t.Error("panic not logged")
	}
}

func TestBehindTrustedProxy(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	l := h.addLink(linkSpec{name: "f.txt", content: []byte("x")})
	resp, _ := h.do(h.browser(false), http.MethodGet, "/d/"+l.token, http.Header{
		"X-Forwarded-For":   {"203.0.113.5, 198.51.100.9"},
		"X-Forwarded-Proto": {"https"},
	}, nil)
	mustStatus(t, resp, http.StatusOK)
	viewed := h.events.ofType(audit.TypeLinkViewed)
	if len(viewed) != 1 || viewed[0].ClientAddr != "198.51.100.9" {
		t.Errorf("link.viewed = %+v, want client 198.51.100.9", viewed)
	}
	for _, c := range resp.Cookies() {
		if c.Name == csrfCookie && !c.Secure {
			t.Error("cookie not Secure although the proxy says HTTPS")
		}
	}
}

func TestPurgedBlobGives410(t *testing.T) {
	h := newHarness(t)
	l := h.addLink(linkSpec{name: "f.txt", content: []byte("x")})
	loc := h.signedURL(l.token)
	if err := h.blobs.Delete(l.file.ID); err != nil {
		t.Fatal(err)
	}
	resp, body := h.do(h.browser(false), http.MethodGet, loc, nil, nil)
	mustStatus(t, resp, http.StatusGone)
	if !strings.Contains(string(body), "deleted") {
		t.Errorf("410 page: %s", body)
	}
	if n := len(h.events.ofType(audit.TypeDownloadOK)); n != 0 {
		t.Errorf("%d download.ok events for a missing blob", n)
	}
}
