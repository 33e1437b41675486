package linkserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
)

// msgFile is one file of a test message.
type msgFile struct {
	name         string
	content      []byte
	body         io.Reader // instead of content: streamed into the vault
	maxDownloads int
	expiresIn    time.Duration // 0 = a week
}

type pageMessage struct {
	token string
	id    string
	links []testLink // in the order of the files given
}

// addMessage stores a message with a page token and one link per file,
// through the real store and vault, as the pipeline does.
func (h *harness) addPageMessage(m store.Message, files ...msgFile) pageMessage {
	h.t.Helper()
	now := h.clock.Now()
	token, hash, err := store.NewToken()
	if err != nil {
		h.t.Fatal(err)
	}
	m.ID = store.NewID()
	m.MessageID = "<" + m.ID + "@example.com>"
	if m.Sender == "" {
		m.Sender = "alice@example.com"
	}
	m.Recipients = []string{"bob@example.net"}
	m.ClientAddr = "192.0.2.1"
	m.CreatedAt = now
	m.PageTokenHash = hash
	var (
		sfiles []store.File
		slinks []store.Link
		out    = pageMessage{token: token, id: m.ID}
	)
	for _, f := range files {
		if f.expiresIn == 0 {
			f.expiresIn = 7 * 24 * time.Hour
		}
		// File IDs are uuid v7, so files keep the order given; one
		// millisecond apart to be sure.
		time.Sleep(2 * time.Millisecond)
		fileID := store.NewID()
		body := f.body
		if body == nil {
			body = bytes.NewReader(f.content)
		}
		info, err := h.blobs.Put(fileID, body)
		if err != nil {
			h.t.Fatal(err)
		}
		linkToken, linkHash, err := store.NewToken()
		if err != nil {
			h.t.Fatal(err)
		}
		file := store.File{ID: fileID, MessageID: m.ID, Name: f.name, ContentType: "application/octet-stream",
			Size: info.Size, SHA256: info.SHA256, KeyID: info.KeyID, CreatedAt: now, ExpiresAt: now.Add(f.expiresIn)}
		link := store.Link{ID: store.NewID(), FileID: fileID, TokenHash: linkHash, CreatedAt: now,
			ExpiresAt: now.Add(f.expiresIn), MaxDownloads: f.maxDownloads}
		sfiles = append(sfiles, file)
		slinks = append(slinks, link)
		out.links = append(out.links, testLink{token: linkToken, id: link.ID, file: file})
	}
	if err := h.store.CreateMessage(context.Background(), m, sfiles, slinks); err != nil {
		h.t.Fatal(err)
	}
	return out
}

var (
	messageAllRE  = regexp.MustCompile(`<form method="post" action="(/m/[^"/]+/all)">\s*<input type="hidden" name="csrf" value="([^"]*)">`)
	messageFileRE = regexp.MustCompile(`<form method="post" action="(/m/[^"/]+)">\s*<input type="hidden" name="csrf" value="([^"]*)">\s*<input type="hidden" name="file" value="([^"]*)">`)
)

// messagePage is what a browser finds on a message page.
type messagePage struct {
	body      string
	allAction string
	csrf      string
	files     map[string]string // link ID → action of its form
}

// openMessage GETs the message page with c and parses its forms.
func (h *harness) openMessage(c *http.Client, token string, header http.Header) (*http.Response, messagePage) {
	h.t.Helper()
	resp, body := h.do(c, http.MethodGet, "/m/"+token, header, nil)
	p := messagePage{body: string(body), files: map[string]string{}}
	if m := messageAllRE.FindStringSubmatch(p.body); m != nil {
		p.allAction, p.csrf = html.UnescapeString(m[1]), m[2]
	}
	for _, m := range messageFileRE.FindAllStringSubmatch(p.body, -1) {
		p.files[m[3]] = html.UnescapeString(m[1])
		if p.csrf == "" {
			p.csrf = m[2]
		}
	}
	return resp, p
}

// postMessage POSTs a message page form as a browser on our origin does.
func (h *harness) postMessage(c *http.Client, action string, form url.Values) (*http.Response, []byte) {
	h.t.Helper()
	return h.do(c, http.MethodPost, action, http.Header{
		"Content-Type":   {"application/x-www-form-urlencoded"},
		"Sec-Fetch-Site": {"same-origin"},
		"Origin":         {h.http.URL},
	}, strings.NewReader(form.Encode()))
}

// messageCookie is the CSRF cookie the jar holds for the message pages.
func messageCookie(t testing.TB, c *http.Client, base string) string {
	t.Helper()
	u, err := url.Parse(base + messageCookiePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == csrfCookie {
			return ck.Value
		}
	}
	t.Fatal("no ag_csrf cookie for /m/ in the jar")
	return ""
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// The page lists every file with its name, exact size, SHA-256 and expiry,
// in English and Japanese, escaped, with the page chrome of the landing
// page; GET and HEAD count nothing and record one link.viewed per file.
func TestMessagePageListsFiles(t *testing.T) {
	h := newHarness(t)
	files := []msgFile{
		{name: "見積書 2026.pdf", content: bytes.Repeat([]byte("見積"), 1000)},
		{name: `<script>alert("x")</script>.txt`, content: []byte("plain"), maxDownloads: 3},
		{name: "報告.xlsx", content: []byte("xlsx bytes"), expiresIn: 48 * time.Hour},
	}
	m := h.addPageMessage(store.Message{Sender: `"Alice" <alice@example.com>`, Lang: "en"}, files...)

	for _, tc := range []struct {
		header http.Header
		lang   string
		cat    *catalog
	}{
		{http.Header{"Accept-Language": {"en-US,en;q=0.9"}}, "en", english},
		{http.Header{"Accept-Language": {"ja,en;q=0.5"}}, "ja", japanese},
	} {
		resp, p := h.openMessage(h.browser(false), m.token, tc.header)
		mustStatus(t, resp, http.StatusOK)
		if got := resp.Header.Get("Content-Language"); got != tc.lang {
			t.Errorf("%s: Content-Language %q", tc.lang, got)
		}
		if resp.Header.Get("Content-Security-Policy") != pageCSP || resp.Header.Get("X-Frame-Options") != "DENY" ||
			resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: security headers %v", tc.lang, resp.Header)
		}
		if !strings.Contains(p.body, `<html lang="`+tc.lang+`">`) {
			t.Errorf("%s: no html lang", tc.lang)
		}
		mt := messageTexts[tc.lang]
		for _, want := range []string{"<h1>" + mt.Title + "</h1>", mt.DownloadAll, html.EscapeString(`"Alice" <alice@example.com>`)} {
			if !strings.Contains(p.body, want) {
				t.Errorf("%s: page lacks %q", tc.lang, want)
			}
		}
		for i, f := range files {
			l := m.links[i]
			expires := tc.cat.formatTime(l.file.ExpiresAt.In(testZone))
			for _, want := range []string{
				`<h2 id="file-` + string(rune('1'+i)) + `" class="name">` + html.EscapeString(f.name) + `</h2>`,
				"(" + tc.cat.byteCount(int64(len(f.content))) + ")",
				groupedHex(sha256Of(f.content)),
				`<time datetime="` + l.file.ExpiresAt.In(testZone).Format(time.RFC3339) + `">` + expires + `</time>`,
			} {
				if !strings.Contains(p.body, want) && !strings.Contains(html.UnescapeString(p.body), want) {
					t.Errorf("%s: file %d: page lacks %q", tc.lang, i, want)
				}
			}
			if _, ok := p.files[l.id]; !ok {
				t.Errorf("%s: no download form for file %d", tc.lang, i)
			}
		}
		if strings.Contains(p.body, "<script>") {
			t.Errorf("%s: file name not escaped", tc.lang)
		}
		if p.allAction != "/m/"+m.token+"/all" {
			t.Errorf("%s: Download all action %q", tc.lang, p.allAction)
		}
		// No external assets, no script: usable without JavaScript.
		if regexp.MustCompile(`(?i)(src|href)=|<script|<link`).MatchString(p.body) {
			t.Errorf("%s: page loads something: %s", tc.lang, p.body)
		}
	}

	// Without Accept-Language the message's language decides.
	ja := h.addPageMessage(store.Message{Lang: "ja"}, msgFile{name: "a.txt", content: []byte("a")})
	resp, p := h.openMessage(h.browser(false), ja.token, nil)
	mustStatus(t, resp, http.StatusOK)
	if !strings.Contains(p.body, `<html lang="ja">`) {
		t.Errorf("message in ja without Accept-Language: page not in Japanese")
	}

	resp, _ = h.do(h.browser(false), http.MethodHead, "/m/"+m.token, nil, nil)
	mustStatus(t, resp, http.StatusOK)
	for _, l := range m.links {
		if n := h.downloads(l.id); n != 0 {
			t.Errorf("GET/HEAD counted %d downloads on %s", n, l.file.Name)
		}
	}
	viewed := 0
	for _, e := range h.events.ofType(audit.TypeLinkViewed) {
		if e.MessageID == m.id {
			viewed++
			if e.Detail != auditMessagePage || e.LinkID == "" || e.FileName == "" {
				t.Errorf("link.viewed %+v", e)
			}
		}
	}
	if viewed != 3*3 { // two GETs and one HEAD, three files each
		t.Errorf("link.viewed events for the message: %d, want 9", viewed)
	}
	if n := len(h.events.ofType(audit.TypeDownloadOK)); n != 0 {
		t.Errorf("download.ok after GETs: %d", n)
	}
}

// A file's form counts that file's download and leads to the signed URL
// that streams its exact bytes; the other files are untouched.
func TestMessagePageFileDownload(t *testing.T) {
	h := newHarness(t)
	content := bytes.Repeat([]byte{0, 1, 2, 0xff}, 100_000)
	m := h.addPageMessage(store.Message{}, msgFile{name: "データ.bin", content: content, maxDownloads: 1}, msgFile{name: "other.txt", content: []byte("other")})
	c := h.browser(false)
	_, p := h.openMessage(c, m.token, nil)
	target := m.links[0]
	resp, body := h.postMessage(c, p.files[target.id], url.Values{csrfField: {p.csrf}, fileField: {target.id}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST: status %d, body %s", resp.StatusCode, body)
	}
	if n := h.downloads(target.id); n != 1 {
		t.Errorf("downloads = %d, want 1", n)
	}
	if n := h.downloads(m.links[1].id); n != 0 {
		t.Errorf("other file counted: %d", n)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "/f/"+target.id+"/") {
		t.Fatalf("Location %q", loc)
	}
	resp, got := h.do(http.DefaultClient, http.MethodGet, loc, nil, nil)
	mustStatus(t, resp, http.StatusOK)
	if !bytes.Equal(got, content) {
		t.Fatalf("downloaded %d bytes, differ from the original %d", len(got), len(content))
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, "filename*=UTF-8''%E3%83%87%E3%83%BC%E3%82%BF.bin") {
		t.Errorf("Content-Disposition %q", cd)
	}
	if ok := h.events.ofType(audit.TypeDownloadOK); len(ok) != 1 || ok[0].LinkID != target.id {
		t.Errorf("download.ok %+v", ok)
	}

	// The limit is reached: the page says so, without a button for it,
	// and posting the old form is refused with 410.
	resp, p2 := h.openMessage(c, m.token, nil)
	mustStatus(t, resp, http.StatusOK)
	if _, ok := p2.files[target.id]; ok || !strings.Contains(p2.body, messageTexts["en"].stateLimit) {
		t.Errorf("page after the limit: form still there or no state")
	}
	resp, _ = h.postMessage(c, p.files[target.id], url.Values{csrfField: {p.csrf}, fileField: {target.id}})
	mustStatus(t, resp, http.StatusGone)
	if n := h.downloads(target.id); n != 1 {
		t.Errorf("downloads = %d after refused POST", n)
	}
}

// Attack: a message page's form cannot reach a file outside its message
// (another message's link ID, a made-up one, none); a revoked or expired
// file of the message is refused with 410. Nothing is counted.
func TestMessagePageRefusesForeignAndDeadLinks(t *testing.T) {
	h := newHarness(t)
	m := h.addPageMessage(store.Message{},
		msgFile{name: "live.txt", content: []byte("live")},
		msgFile{name: "revoked.txt", content: []byte("revoked")},
		msgFile{name: "expiring.txt", content: []byte("expiring"), expiresIn: time.Hour})
	other := h.addPageMessage(store.Message{}, msgFile{name: "theirs.txt", content: []byte("not yours")})
	if err := h.store.RevokeLink(context.Background(), m.links[1].id, testStart.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	c := h.browser(false)
	_, p := h.openMessage(c, m.token, nil)
	h.clock.Set(testStart.Add(2 * time.Hour))
	action := "/m/" + m.token
	for _, tc := range []struct {
		name   string
		file   string
		status int
		reason string
	}{
		{"link of another message", other.links[0].id, http.StatusNotFound, "unknown"},
		{"made-up link ID", store.NewID(), http.StatusNotFound, "unknown"},
		{"no file field", "", http.StatusNotFound, "unknown"},
		{"revoked file", m.links[1].id, http.StatusGone, "revoked"},
		{"expired file", m.links[2].id, http.StatusGone, "expired"},
	} {
		before := len(h.events.ofType(audit.TypeDownloadDenied))
		resp, body := h.postMessage(c, action, url.Values{csrfField: {p.csrf}, fileField: {tc.file}})
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		if !strings.Contains(string(body), "<!doctype html>") {
			t.Errorf("%s: no error page", tc.name)
		}
		denied := h.events.ofType(audit.TypeDownloadDenied)
		if len(denied) != before+1 || denied[len(denied)-1].Reason != tc.reason || denied[len(denied)-1].MessageID != m.id {
			t.Errorf("%s: download.denied %+v", tc.name, denied[before:])
		}
	}
	for _, l := range append(m.links, other.links...) {
		if n := h.downloads(l.id); n != 0 {
			t.Errorf("%s counted %d", l.file.Name, n)
		}
	}
}

// Attack: CSRF. A cross-site POST, one without the cookie, a form token
// from another message's page or from a landing page are refused with 403
// and count nothing; a page opened from webmail (no cookie sent, so a new
// one overwrites the first tab's) does not break the first tab's forms.
func TestMessagePageCSRF(t *testing.T) {
	h := newHarness(t)
	m := h.addPageMessage(store.Message{}, msgFile{name: "a.txt", content: []byte("aaa")})
	other := h.addPageMessage(store.Message{}, msgFile{name: "b.txt", content: []byte("bbb")})
	lone := h.addLink(linkSpec{name: "c.txt", content: []byte("ccc")})

	tab := func(token string) (csrf, cookie string) {
		c := h.browser(false) // a fresh jar: no cookie sent, as SameSite=Strict from another site
		_, p := h.openMessage(c, token, nil)
		return p.csrf, messageCookie(t, c, h.http.URL)
	}
	csrf1, cookie1 := tab(m.token)
	csrf2, cookie2 := tab(other.token)
	if cookie1 == cookie2 {
		t.Fatal("both tabs got the same cookie")
	}
	_, landingCSRF := h.landing(h.browser(false), lone.token)

	post := func(path string, form url.Values, cookie string, header map[string]string) int {
		req, err := http.NewRequest(http.MethodPost, h.http.URL+path, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: csrfCookie, Value: cookie})
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	id := m.links[0].id
	for _, path := range []string{"/m/" + m.token, "/m/" + m.token + "/all"} {
		for _, tc := range []struct {
			name   string
			form   url.Values
			cookie string
			header map[string]string
		}{
			{"cross-site", url.Values{csrfField: {csrf1}, fileField: {id}}, cookie1, map[string]string{"Sec-Fetch-Site": "cross-site"}},
			{"foreign Origin", url.Values{csrfField: {csrf1}, fileField: {id}}, cookie1, map[string]string{"Origin": "https://evil.example"}},
			{"no cookie", url.Values{csrfField: {csrf1}, fileField: {id}}, "", nil},
			{"no field", url.Values{fileField: {id}}, cookie1, nil},
			{"form of another message", url.Values{csrfField: {csrf2}, fileField: {id}}, cookie1, nil},
			{"form of a landing page", url.Values{csrfField: {landingCSRF}, fileField: {id}}, cookie1, nil},
		} {
			if got := post(path, tc.form, tc.cookie, tc.header); got != http.StatusForbidden {
				t.Errorf("%s %s: status %d, want 403", path, tc.name, got)
			}
		}
	}
	if n := h.downloads(id); n != 0 {
		t.Fatalf("refused POSTs counted %d", n)
	}
	// Tab one's form with tab two's cookie, as the browser now holds it.
	same := map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": h.http.URL}
	if got := post("/m/"+m.token, url.Values{csrfField: {csrf1}, fileField: {id}}, cookie2, same); got != http.StatusSeeOther {
		t.Errorf("first tab after the second: status %d, want 303", got)
	}
	if got := post("/m/"+m.token+"/all", url.Values{csrfField: {csrf1}}, cookie2, same); got != http.StatusOK {
		t.Errorf("first tab's Download all after the second: status %d, want 200", got)
	}
	if n := h.downloads(id); n != 2 {
		t.Errorf("downloads = %d, want 2", n)
	}
}

// Unknown tokens (made up, a link's token, a manage token) get the 404
// page on every route; other methods get 405.
func TestMessagePageUnknownToken(t *testing.T) {
	h := newHarness(t)
	manage, manageHash, err := store.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	m := h.addPageMessage(store.Message{ManageTokenHash: manageHash}, msgFile{name: "a.txt", content: []byte("a")})
	c := h.browser(false)
	_, p := h.openMessage(c, m.token, nil)
	for _, token := range []string{"nope", strings.Repeat("A", 43), m.links[0].token, manage, m.token + "x"} {
		resp, body := h.do(c, http.MethodGet, "/m/"+token, nil, nil)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), english.errors[pageNotFound].Title) {
			t.Errorf("GET /m/%s: status %d", token, resp.StatusCode)
		}
		for _, path := range []string{"/m/" + token, "/m/" + token + "/all"} {
			resp, _ := h.postMessage(c, path, url.Values{csrfField: {p.csrf}, fileField: {m.links[0].id}})
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("POST %s: status %d", path, resp.StatusCode)
			}
		}
	}
	if n := h.downloads(m.links[0].id); n != 0 {
		t.Errorf("counted %d", n)
	}
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodPut, "/m/" + m.token, "GET, HEAD, POST"},
		{http.MethodGet, "/m/" + m.token + "/all", "POST"},
	} {
		resp, _ := h.do(c, tc.method, tc.path, nil, nil)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
}

// With verify: recipient-code the page and every download go through the
// verification gate: without a verified recipient nothing is shown or
// counted.
func TestMessagePageVerificationGate(t *testing.T) {
	h := newHarness(t)
	open := h.addPageMessage(store.Message{}, msgFile{name: "a.txt", content: []byte("a")})
	gated := h.addPageMessage(store.Message{Verify: store.VerifyRecipientCode}, msgFile{name: "secret.txt", content: []byte("secret")})
	c := h.browser(false)
	h.openMessage(c, open.token, nil) // the /m/ cookie in the jar
	resp, page := h.openMessage(c, gated.token, nil)
	if resp.StatusCode != http.StatusForbidden || strings.Contains(page.body, "secret.txt") {
		t.Fatalf("gated page: status %d, shows the file: %v", resp.StatusCode, strings.Contains(page.body, "secret.txt"))
	}
	// A form token for the gated page, as if its page had been served.
	csrf := h.server.formToken(store.HashToken(gated.token), h.clock.Now())
	for _, path := range []string{"/m/" + gated.token, "/m/" + gated.token + "/all"} {
		resp, body := h.postMessage(c, path, url.Values{csrfField: {csrf}, fileField: {gated.links[0].id}})
		if resp.StatusCode != http.StatusForbidden || bytes.Contains(body, []byte("secret")) {
			t.Errorf("POST %s: status %d", path, resp.StatusCode)
		}
	}
	if n := h.downloads(gated.links[0].id); n != 0 {
		t.Errorf("gated file counted %d", n)
	}
	for _, e := range h.events.all() {
		if e.MessageID == gated.id && (e.Type == audit.TypeLinkViewed || e.Type == audit.TypeDownloadOK) {
			t.Errorf("event for the gated message: %+v", e)
		}
	}
}

// The landing page /d/ keeps working for a message that has a page.
func TestMessageLinksStillHaveLandingPages(t *testing.T) {
	h := newHarness(t)
	m := h.addPageMessage(store.Message{}, msgFile{name: "a.txt", content: []byte("landing works")})
	resp, body := h.do(http.DefaultClient, http.MethodGet, h.signedURL(m.links[0].token), nil, nil)
	mustStatus(t, resp, http.StatusOK)
	if string(body) != "landing works" {
		t.Errorf("got %q", body)
	}
}

// The whole recipient flow of the message page on both store backends:
// page, one file, Download all, and a file revoked in the store answered
// 410 at once.
func TestMessagePageOnBothBackends(t *testing.T) {
	for _, backend := range []string{backendSQLite, backendRedis} {
		t.Run(backend, func(t *testing.T) {
			h := newHarnessOn(t, backend)
			m := h.addPageMessage(store.Message{Lang: "ja"},
				msgFile{name: "一.txt", content: []byte("one")},
				msgFile{name: "二.txt", content: []byte("two"), maxDownloads: 2})
			c := h.browser(false)
			resp, p := h.openMessage(c, m.token, nil)
			mustStatus(t, resp, http.StatusOK)
			if len(p.files) != 2 || !strings.Contains(p.body, "一.txt") || !strings.Contains(p.body, `<html lang="ja">`) {
				t.Fatalf("page: %d forms", len(p.files))
			}
			resp, _ = h.postMessage(c, p.files[m.links[1].id], url.Values{csrfField: {p.csrf}, fileField: {m.links[1].id}})
			mustStatus(t, resp, http.StatusSeeOther)
			resp, body := h.do(http.DefaultClient, http.MethodGet, resp.Header.Get("Location"), nil, nil)
			if resp.StatusCode != http.StatusOK || string(body) != "two" {
				t.Fatalf("file: %d %q", resp.StatusCode, body)
			}
			resp, body = h.postMessage(c, p.allAction, url.Values{csrfField: {p.csrf}})
			mustStatus(t, resp, http.StatusOK)
			if !bytes.Contains(body, []byte("一.txt")) || !bytes.Contains(body, []byte("two")) {
				t.Errorf("ZIP lacks a file")
			}
			if a, b := h.downloads(m.links[0].id), h.downloads(m.links[1].id); a != 1 || b != 2 {
				t.Errorf("downloads %d and %d, want 1 and 2", a, b)
			}
			if err := h.store.RevokeLink(context.Background(), m.links[0].id, testStart); err != nil {
				t.Fatal(err)
			}
			resp, _ = h.postMessage(c, p.files[m.links[0].id], url.Values{csrfField: {p.csrf}, fileField: {m.links[0].id}})
			mustStatus(t, resp, http.StatusGone)
			// Both files are dead now (one revoked, one at its limit).
			resp, _ = h.postMessage(c, p.allAction, url.Values{csrfField: {p.csrf}})
			mustStatus(t, resp, http.StatusGone)
		})
	}
}

// Attack: guessing page tokens or link IDs. Each refused POST counts
// against the client's denial limit; past it the client gets 429 even
// for a real page, so guessing costs a minute per few dozen tries (and
// a token has 256 bits).
func TestMessageGuessingIsLimited(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.DenialBurst, o.DenialLimit = 3, 6 })
	m := h.addPageMessage(store.Message{}, msgFile{name: "a.txt", content: []byte("a")})
	c := h.browser(false)
	_, p := h.openMessage(c, m.token, nil)
	for i := range 6 {
		path, file := "/m/"+strings.Repeat("A", 42)+string(rune('A'+i)), m.links[0].id
		if i%2 == 1 {
			path, file = p.files[m.links[0].id], store.NewID() // a made-up link ID on the real page
		}
		resp, _ := h.postMessage(c, path, url.Values{csrfField: {p.csrf}, fileField: {file}})
		mustStatus(t, resp, http.StatusNotFound)
	}
	resp, _ := h.openMessage(c, m.token, nil)
	mustStatus(t, resp, http.StatusTooManyRequests)
	resp, _ = h.postMessage(c, p.allAction, url.Values{csrfField: {p.csrf}})
	mustStatus(t, resp, http.StatusTooManyRequests)
	if n := h.downloads(m.links[0].id); n != 0 {
		t.Errorf("counted %d", n)
	}
}
