package linkserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/store/redisstore"
)

// msgSpec describes a message with several files, each with one link,
// and a manage token, created through the store and the vault as the
// pipeline does.
type msgSpec struct {
	subject    string
	sender     string
	recipients []string
	files      []string // names
	notify     string
	lang       string
	expiresIn  time.Duration // 0 = a week
}

type testMessage struct {
	manage  string // the manage token
	page    string // the message page token
	tokens  []string
	linkIDs []string
	msg     store.Message
	files   []store.File
	content [][]byte
}

func (h *harness) addMessage(spec msgSpec) testMessage {
	h.t.Helper()
	if spec.expiresIn == 0 {
		spec.expiresIn = 7 * 24 * time.Hour
	}
	if spec.sender == "" {
		spec.sender = "alice@example.com"
	}
	if spec.recipients == nil {
		spec.recipients = []string{"bob@example.net", "carol@example.org"}
	}
	now := h.clock.Now()
	manage, manageHash, err := store.NewToken()
	if err != nil {
		h.t.Fatal(err)
	}
	page, pageHash, err := store.NewToken()
	if err != nil {
		h.t.Fatal(err)
	}
	tm := testMessage{manage: manage, page: page, msg: store.Message{
		ID: store.NewID(), MessageID: "<" + store.NewID() + "@example.com>", Sender: spec.sender,
		Recipients: spec.recipients, ClientAddr: "192.0.2.1", CreatedAt: now, Subject: spec.subject,
		Lang: spec.lang, NotifySender: spec.notify, PageTokenHash: pageHash, ManageTokenHash: manageHash,
	}}
	var links []store.Link
	for i, name := range spec.files {
		content := []byte(fmt.Sprintf("content of file %d: %s\n", i, strings.Repeat("x", 100*i)))
		fileID := store.NewID()
		info, err := h.blobs.Put(fileID, bytes.NewReader(content))
		if err != nil {
			h.t.Fatal(err)
		}
		token, hash, err := store.NewToken()
		if err != nil {
			h.t.Fatal(err)
		}
		f := store.File{ID: fileID, MessageID: tm.msg.ID, Name: name, ContentType: "application/pdf",
			Size: info.Size, SHA256: info.SHA256, KeyID: info.KeyID, CreatedAt: now, ExpiresAt: now.Add(spec.expiresIn)}
		l := store.Link{ID: store.NewID(), FileID: fileID, TokenHash: hash, CreatedAt: now, ExpiresAt: now.Add(spec.expiresIn)}
		tm.files = append(tm.files, f)
		tm.tokens = append(tm.tokens, token)
		tm.linkIDs = append(tm.linkIDs, l.ID)
		tm.content = append(tm.content, content)
		links = append(links, l)
	}
	if err := h.store.CreateMessage(context.Background(), tm.msg, tm.files, links); err != nil {
		h.t.Fatal(err)
	}
	return tm
}

var manageCSRFRE = regexp.MustCompile(`<input type="hidden" name="csrf" value="([^"]*)">`)

// managePage GETs the manage page and returns its body and CSRF field.
func (h *harness) managePage(c *http.Client, token string, header http.Header) (*http.Response, string, string) {
	h.t.Helper()
	resp, body := h.do(c, http.MethodGet, "/s/"+token, header, nil)
	csrf := ""
	if m := manageCSRFRE.FindSubmatch(body); m != nil {
		csrf = string(m[1])
	}
	return resp, string(body), csrf
}

// manageAction POSTs a form of the manage page as a browser would.
func (h *harness) manageAction(c *http.Client, token string, form url.Values) (*http.Response, string) {
	h.t.Helper()
	resp, body := h.do(c, http.MethodPost, "/s/"+token,
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(form.Encode()))
	return resp, string(body)
}

// download runs the whole download of a link (landing, POST, file) and
// returns the file's bytes.
func (h *harness) download(token string) []byte {
	h.t.Helper()
	loc := h.signedURL(token)
	resp, body := h.do(h.browser(false), http.MethodGet, loc, nil, nil)
	mustStatus(h.t, resp, http.StatusOK)
	return body
}

func landingStatus(h *harness, token string) int {
	h.t.Helper()
	resp, _ := h.do(h.browser(false), http.MethodGet, "/d/"+token, nil, nil)
	return resp.StatusCode
}

// TestManagePage: the manage page shows the message, each file with its
// expiry, state and downloads count, and every view and download (time
// in links.time_zone, "not verified", client address), in English and
// Japanese, with the headers that keep its token private.
func TestManagePage(t *testing.T) {
	h := newHarness(t)
	m := h.addMessage(msgSpec{subject: "Quarterly figures", files: []string{"見積書.pdf", "report.xlsx"}})
	if got := h.download(m.tokens[0]); !bytes.Equal(got, m.content[0]) {
		t.Fatalf("download: got %q", got)
	}
	h.clock.Set(testStart.Add(time.Hour))
	if s := landingStatus(h, m.tokens[0]); s != http.StatusOK {
		t.Fatalf("second view: %d", s)
	}

	resp, body, csrf := h.managePage(h.browser(false), m.manage, nil)
	mustStatus(t, resp, http.StatusOK)
	for _, want := range []string{
		"Quarterly figures", "alice@example.com", "bob@example.net", "carol@example.org",
		"見積書.pdf", "report.xlsx", groupedHex(mustHex(t, m.files[0].SHA256)),
		"Monday, 9 March 2026, 19:00 JST", // expiry in links.time_zone
		"available", "viewed", "downloaded", "not verified", "127.0.0.1",
		"2026-03-02 19:00:00 JST", "2026-03-02 20:00:00 JST", // access times
		"Nobody has opened this file yet.", "Withdraw all files",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("manage page lacks %q", want)
		}
	}
	if csrf == "" {
		t.Fatal("manage page has no form")
	}
	// Views: two of file 0 (the download's landing page and the second
	// view), one download.
	if n := strings.Count(body, "<td>viewed</td>"); n != 2 {
		t.Errorf("%d views shown, want 2", n)
	}
	if n := strings.Count(body, "<td>downloaded</td>"); n != 1 {
		t.Errorf("%d downloads shown, want 1", n)
	}
	checkManageHeaders(t, resp, body)

	resp, body, _ = h.managePage(h.browser(false), m.manage, http.Header{"Accept-Language": {"ja"}})
	mustStatus(t, resp, http.StatusOK)
	for _, want := range []string{"送信したファイル", "閲覧", "ダウンロード", "未確認", "すべてのファイルを取り消す", `lang="ja"`} {
		if !strings.Contains(body, want) {
			t.Errorf("Japanese manage page lacks %q", want)
		}
	}
	// HEAD shows nothing and changes nothing.
	resp, b := h.do(h.browser(false), http.MethodHead, "/s/"+m.manage, nil, nil)
	mustStatus(t, resp, http.StatusOK)
	if len(b) != 0 {
		t.Errorf("HEAD has a body")
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b := make([]byte, len(s)/2)
	if _, err := fmt.Sscanf(s, "%x", &b); err != nil {
		t.Fatal(err)
	}
	return b
}

// checkManageHeaders: the page is never cached, indexed or framed, sends
// no Referer anywhere (the token is in its URL), loads nothing from
// elsewhere and allows only its own two style blocks.
func checkManageHeaders(t *testing.T, resp *http.Response, body string) {
	t.Helper()
	for k, want := range map[string]string{
		"Cache-Control":           "no-store",
		"Referrer-Policy":         "no-referrer",
		"X-Robots-Tag":            "noindex, nofollow",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": manageCSP,
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if !strings.HasPrefix(manageCSP, "default-src 'none'; style-src 'sha256-") || strings.Contains(manageCSP, "unsafe") {
		t.Errorf("CSP not strict: %s", manageCSP)
	}
	if !strings.Contains(body, `<meta name="referrer" content="no-referrer">`) {
		t.Errorf("page lacks the referrer meta")
	}
	for _, bad := range []string{"http://", "https://", "<script", " src=", "<link", "@import"} {
		if strings.Contains(body, bad) {
			t.Errorf("page contains %q (external asset or script)", bad)
		}
	}
	for _, c := range resp.Cookies() {
		if c.Name == csrfCookie && (c.Path != manageCookiePath || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode) {
			t.Errorf("CSRF cookie %+v: want path /s/, HttpOnly, SameSite=Strict", c)
		}
	}
}

// TestManageUnknownTokens: only the manage token opens the page; a link
// token, the message page token or an invented one get the 404 page, and
// the manage token opens nothing else.
func TestManageUnknownTokens(t *testing.T) {
	h := newHarness(t)
	m := h.addMessage(msgSpec{files: []string{"a.pdf"}})
	invented, _, _ := store.NewToken()
	for name, path := range map[string]string{
		"invented":             "/s/" + invented,
		"link token":           "/s/" + m.tokens[0],
		"page token":           "/s/" + m.page,
		"manage token on /d/":  "/d/" + m.manage,
		"not a token":          "/s/%3Cscript%3E",
		"one character short":  "/s/" + m.manage[:len(m.manage)-1],
		"one character longer": "/s/" + m.manage + "A",
	} {
		resp, body := h.do(h.browser(false), http.MethodGet, path, nil, nil)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "Link not found") {
			t.Errorf("%s: status %d, want the 404 page", name, resp.StatusCode)
		}
	}
	resp, _ := h.manageAction(h.browser(false), invented, url.Values{"action": {"revoke-all"}})
	mustStatus(t, resp, http.StatusNotFound)
	resp, _ = h.do(h.browser(false), http.MethodPut, "/s/"+m.manage, nil, nil)
	mustStatus(t, resp, http.StatusMethodNotAllowed)
	// The token never reaches the log.
	if strings.Contains(h.logs.String(), m.manage) {
		t.Errorf("manage token in the log")
	}
	if s := landingStatus(h, m.tokens[0]); s != http.StatusOK {
		t.Errorf("link after the probes: %d", s)
	}
}

// TestManageRevokeFile: withdrawing one file on the manage page makes its
// link answer 410 at once, leaves the other file's link working, and is
// audited with the sender as actor; posting the form again (Back, second
// tab) changes nothing and audits nothing more. Both backends.
func TestManageRevokeFile(t *testing.T) {
	for _, backend := range []string{backendSQLite, backendRedis} {
		t.Run(backend, func(t *testing.T) {
			h := newHarnessOn(t, backend)
			m := h.addMessage(msgSpec{files: []string{"a.pdf", "b.pdf"}})
			c := h.browser(false)
			_, _, csrf := h.managePage(c, m.manage, nil)
			form := url.Values{csrfField: {csrf}, "action": {"revoke"}, "link": {m.linkIDs[0]}}
			resp, _ := h.manageAction(c, m.manage, form)
			mustStatus(t, resp, http.StatusSeeOther)
			if loc := resp.Header.Get("Location"); loc != "/s/"+m.manage+"?done=revoked" {
				t.Errorf("Location = %q", loc)
			}
			if s := landingStatus(h, m.tokens[0]); s != http.StatusGone {
				t.Errorf("withdrawn link: %d, want 410", s)
			}
			if s := landingStatus(h, m.tokens[1]); s != http.StatusOK {
				t.Errorf("other link: %d, want 200", s)
			}
			revoked := h.events.ofType(audit.TypeLinkRevoked)
			if len(revoked) != 1 {
				t.Fatalf("%d link.revoked events, want 1", len(revoked))
			}
			e := revoked[0]
			if e.Actor != "sender" || e.Detail != "by sender" || e.Sender != "alice@example.com" ||
				e.LinkID != m.linkIDs[0] || e.MessageID != m.msg.ID || e.FileName != "a.pdf" || e.ClientAddr == "" {
				t.Errorf("link.revoked = %+v", e)
			}
			resp, b := h.do(c, http.MethodGet, resp.Header.Get("Location"), nil, nil)
			mustStatus(t, resp, http.StatusOK)
			if body := string(b); !strings.Contains(body, "The file was withdrawn.") || !strings.Contains(body, "withdrawn on Monday, 2 March 2026, 19:00 JST") {
				t.Errorf("page after revoke lacks the confirmation or state")
			}
			// Again, as after Back.
			h.clock.Set(testStart.Add(time.Minute))
			resp, _ = h.manageAction(c, m.manage, form)
			mustStatus(t, resp, http.StatusSeeOther)
			if n := len(h.events.ofType(audit.TypeLinkRevoked)); n != 1 {
				t.Errorf("%d link.revoked events after resubmitting, want 1", n)
			}
			v, err := h.store.LinkByID(context.Background(), m.linkIDs[0])
			if err != nil || !v.Link.RevokedAt.Equal(testStart) {
				t.Errorf("revoked at %v (%v), want the first time %v", v.Link.RevokedAt, err, testStart)
			}
			if strings.Contains(h.logs.String(), m.manage) {
				t.Errorf("manage token in the log")
			}
		})
	}
}

// TestManageRevokeAllAcrossInstances: two link servers share one real
// redis-server; withdrawing all files on one makes every link answer 410
// on the other at once, with one link.revoked per link.
func TestManageRevokeAllAcrossInstances(t *testing.T) {
	a := newHarnessOn(t, backendRedis)
	b := a.secondInstance()
	m := a.addMessage(msgSpec{files: []string{"a.pdf", "b.pdf", "c.pdf"}})
	for i, tok := range m.tokens {
		if s := landingStatus(b, tok); s != http.StatusOK {
			t.Fatalf("link %d on instance b before: %d", i, s)
		}
	}
	c := a.browser(false)
	_, _, csrf := a.managePage(c, m.manage, nil)
	resp, _ := a.manageAction(c, m.manage, url.Values{csrfField: {csrf}, "action": {"revoke-all"}})
	mustStatus(t, resp, http.StatusSeeOther)
	for i, tok := range m.tokens {
		if s := landingStatus(b, tok); s != http.StatusGone {
			t.Errorf("link %d on instance b after revoke-all: %d, want 410", i, s)
		}
	}
	revoked := a.events.ofType(audit.TypeLinkRevoked)
	if len(revoked) != 3 {
		t.Fatalf("%d link.revoked events, want 3", len(revoked))
	}
	for _, e := range revoked {
		if e.Actor != "sender" || e.Detail != "by sender" {
			t.Errorf("link.revoked = %+v", e)
		}
	}
	// The page on instance b says so and offers no revoke any more.
	_, body, _ := b.managePage(b.browser(false), m.manage, nil)
	if strings.Contains(body, "Withdraw all files") || strings.Count(body, "withdrawn on") != 3 {
		t.Errorf("page on instance b after revoke-all:\n%s", body)
	}
}

// secondInstance is another link server on the same Redis (its own
// connection), blob directory and MAC key: a second gateway instance.
func (h *harness) secondInstance() *harness {
	h.t.Helper()
	rs, ok := h.store.(*redisstore.Store)
	if !ok {
		h.t.Fatal("secondInstance needs the redis backend")
	}
	addr := rs.Client().(*redis.Client).Options().Addr
	st, err := redisstore.Open(context.Background(), redisstore.Options{URL: "redis://" + addr})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { st.Close() })
	o := &harness{t: h.t, store: st, blobs: h.blobs, events: &eventLog{keep: true}, clock: h.clock, logs: &lockedBuffer{}}
	o.server, err = New(Options{Store: st, Blobs: h.blobs, MACKey: h.server.macKey, Audit: o.events,
		Logger: slog.New(slog.NewJSONHandler(o.logs, nil)), Now: h.clock.Now, Location: testZone})
	if err != nil {
		h.t.Fatal(err)
	}
	o.http = newHTTPTestServer(h.t, o.server)
	return o
}

// TestManageRevokeOtherMessagesLink: a manage page cannot withdraw a link
// of another message, whatever link ID is posted.
func TestManageRevokeOtherMessagesLink(t *testing.T) {
	h := newHarness(t)
	mine := h.addMessage(msgSpec{files: []string{"mine.pdf"}})
	other := h.addMessage(msgSpec{sender: "mallory@example.com", files: []string{"theirs.pdf"}})
	c := h.browser(false)
	_, _, csrf := h.managePage(c, mine.manage, nil)
	for _, id := range []string{other.linkIDs[0], "", "../" + other.linkIDs[0], mine.msg.ID, other.files[0].ID} {
		resp, body := h.manageAction(c, mine.manage, url.Values{csrfField: {csrf}, "action": {"revoke"}, "link": {id}})
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "That file is not part of this message.") {
			t.Errorf("revoke %q: status %d", id, resp.StatusCode)
		}
	}
	if s := landingStatus(h, other.tokens[0]); s != http.StatusOK {
		t.Errorf("other message's link: %d, want 200", s)
	}
	if s := landingStatus(h, mine.tokens[0]); s != http.StatusOK {
		t.Errorf("own link: %d, want 200", s)
	}
	if n := len(h.events.ofType(audit.TypeLinkRevoked)); n != 0 {
		t.Errorf("%d link.revoked events", n)
	}
	refused := h.events.ofType(audit.TypeManageRefused)
	if len(refused) == 0 || refused[0].Reason != "unknown link" || refused[0].Actor != "sender" || refused[0].MessageID != mine.msg.ID {
		t.Errorf("manage.refused = %+v", refused)
	}
}

// TestManageCSRF: an action needs the page's cookie and a form field
// issued for this very manage page; a cross-site POST is refused; a GET
// never acts.
func TestManageCSRF(t *testing.T) {
	h := newHarness(t)
	m := h.addMessage(msgSpec{files: []string{"a.pdf"}})
	other := h.addMessage(msgSpec{files: []string{"b.pdf"}})
	c := h.browser(false)
	_, _, csrf := h.managePage(c, m.manage, nil)
	_, _, otherCSRF := h.managePage(c, other.manage, nil)
	revokeAll := func(field string) url.Values {
		return url.Values{csrfField: {field}, "action": {"revoke-all"}}
	}
	tests := []struct {
		name   string
		client *http.Client
		form   url.Values
		header http.Header
	}{
		{"no cookie", h.browser(false), revokeAll(csrf), nil},
		{"no field", c, url.Values{"action": {"revoke-all"}}, nil},
		{"field of another manage page", c, revokeAll(otherCSRF), nil},
		{"field of a landing page", c, revokeAll(h.server.formToken(store.HashToken(m.tokens[0]), h.clock.Now())), nil},
		{"cross-site", c, revokeAll(csrf), http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"foreign origin", c, revokeAll(csrf), http.Header{"Origin": {"https://evil.example"}}},
	}
	for _, tt := range tests {
		hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
		for k, v := range tt.header {
			hdr[k] = v
		}
		resp, body := h.do(tt.client, http.MethodPost, "/s/"+m.manage, hdr, strings.NewReader(tt.form.Encode()))
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "could not be confirmed") {
			t.Errorf("%s: status %d, want 403", tt.name, resp.StatusCode)
		}
	}
	// GET with the action in the query does nothing.
	resp, _ := h.do(c, http.MethodGet, "/s/"+m.manage+"?action=revoke-all&"+csrfField+"="+url.QueryEscape(csrf), nil, nil)
	mustStatus(t, resp, http.StatusOK)
	if s := landingStatus(h, m.tokens[0]); s != http.StatusOK {
		t.Fatalf("link after refused POSTs and a GET: %d, want 200", s)
	}
	if n := len(h.events.ofType(audit.TypeManageRefused)); n != len(tests) {
		t.Errorf("%d manage.refused events, want %d", n, len(tests))
	}
	// The real form from a second tab still works.
	c2 := h.browser(false)
	_, _, csrf2 := h.managePage(c2, m.manage, nil)
	resp, _ = h.manageAction(c, m.manage, revokeAll(csrf2))
	mustStatus(t, resp, http.StatusSeeOther)
	if s := landingStatus(h, m.tokens[0]); s != http.StatusGone {
		t.Errorf("link after revoke-all: %d, want 410", s)
	}
}

// TestManageExpiry: the sender may set any future expiry up to creation
// plus links.max_expiry; the past, later than that, impossible dates and
// garbage are refused and change nothing. A change applies to every file
// and link, is audited per link, and the expiry purge finds the files at
// the new time.
func TestManageExpiry(t *testing.T) {
	for _, backend := range []string{backendSQLite, backendRedis} {
		t.Run(backend, func(t *testing.T) { testManageExpiry(t, backend) })
	}
}

func testManageExpiry(t *testing.T, backend string) {
	h := newHarnessOn(t, backend, func(o *Options) { o.MaxExpiry = 240 * time.Hour })
	m := h.addMessage(msgSpec{files: []string{"a.pdf", "b.pdf"}})
	c := h.browser(false)
	resp, body, csrf := h.managePage(c, m.manage, nil)
	mustStatus(t, resp, http.StatusOK)
	// created 2026-03-02 19:00 JST; max 240h later = 2026-03-12 19:00 JST.
	if !strings.Contains(body, `max="2026-03-12T19:00"`) || !strings.Contains(body, `value="2026-03-09T19:00"`) {
		t.Errorf("expiry form lacks the current value or the maximum")
	}
	post := func(v string) (*http.Response, string) {
		return h.manageAction(c, m.manage, url.Values{csrfField: {csrf}, "action": {"expiry"}, "expires": {v}})
	}
	expiryOf := func() (time.Time, time.Time) {
		mv, err := h.store.MessageByID(context.Background(), m.msg.ID)
		if err != nil {
			t.Fatal(err)
		}
		return mv.Links[0].Link.ExpiresAt, mv.Links[1].File.ExpiresAt
	}
	refused := []struct{ value, want string }{
		{"2026-03-02T18:59", "must be in the future"}, // a minute ago (JST)
		{"2026-03-02T19:00", "must be in the future"}, // now
		{"0001-01-01T00:00", "must be in the future"},
		{"2026-03-12T19:01", "later than the longest time"},
		{"9999-12-31T23:59", "later than the longest time"},
		{"2026-02-30T10:00", "not a valid date"},
		{"2026-03-05", "not a valid date"},
		{"tomorrow", "not a valid date"},
		{"", "not a valid date"},
		{"2026-03-05T10:00:00.000000000000000000000001", "not a valid date"},
		{"<script>alert(1)</script>", "not a valid date"},
	}
	for _, tt := range refused {
		resp, body := post(tt.value)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tt.want) {
			t.Errorf("expires %q: status %d, want 400 with %q", tt.value, resp.StatusCode, tt.want)
		}
		if strings.Contains(body, "<script>") {
			t.Errorf("expires %q reflected unescaped", tt.value)
		}
	}
	// In Japanese, the refusal names the limit in links.time_zone.
	resp, b := h.do(c, http.MethodPost, "/s/"+m.manage, http.Header{
		"Content-Type": {"application/x-www-form-urlencoded"}, "Accept-Language": {"ja"}},
		strings.NewReader(url.Values{csrfField: {csrf}, "action": {"expiry"}, "expires": {"2026-04-01T00:00"}}.Encode()))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "最長期間 (2026年3月12日(木) 19:00 JST") ||
		!strings.Contains(string(b), "変更されませんでした") {
		t.Errorf("Japanese refusal: %d\n%s", resp.StatusCode, b)
	}
	if l, f := expiryOf(); !l.Equal(testStart.Add(7*24*time.Hour)) || !f.Equal(testStart.Add(7*24*time.Hour)) {
		t.Fatalf("refused changes moved the expiry to %v / %v", l, f)
	}
	if n := len(h.events.ofType(audit.TypeLinkExpiryChanged)); n != 0 {
		t.Fatalf("%d link.expiry_changed after refusals", n)
	}

	// Shorten to tomorrow 09:30 JST.
	resp, _ = post("2026-03-03T09:30")
	mustStatus(t, resp, http.StatusSeeOther)
	want := time.Date(2026, 3, 3, 9, 30, 0, 0, testZone)
	if l, f := expiryOf(); !l.Equal(want) || !f.Equal(want) {
		t.Errorf("after shortening: link %v, file %v; want %v", l, f, want)
	}
	changed := h.events.ofType(audit.TypeLinkExpiryChanged)
	if len(changed) != 2 {
		t.Fatalf("%d link.expiry_changed events, want 2", len(changed))
	}
	for _, e := range changed {
		if e.Actor != "sender" || !e.Expires.Equal(want) || e.Sender != "alice@example.com" ||
			e.Detail != "from 2026-03-09T10:00:00Z to 2026-03-03T00:30:00Z by sender" {
			t.Errorf("link.expiry_changed = %+v", e)
		}
	}
	expired, err := h.store.ExpiredFiles(context.Background(), want.Add(time.Second), 0)
	if err != nil || len(expired) != 2 {
		t.Errorf("expiry purge after the new expiry finds %d files (%v), want 2", len(expired), err)
	}
	// Extend to exactly the maximum.
	resp, _ = post("2026-03-12T19:00")
	mustStatus(t, resp, http.StatusSeeOther)
	if l, _ := expiryOf(); !l.Equal(testStart.Add(240 * time.Hour)) {
		t.Errorf("after extending to the maximum: %v", l)
	}
	// The landing page shows the new expiry.
	_, b = h.do(h.browser(false), http.MethodGet, "/d/"+m.tokens[0], nil, nil)
	if !strings.Contains(string(b), "Thursday, 12 March 2026, 19:00 JST") {
		t.Errorf("landing page does not show the new expiry")
	}
	// Once expired, the expiry is locked.
	h.clock.Set(testStart.Add(241 * time.Hour))
	_, body, _ = h.managePage(c, m.manage, nil)
	if !strings.Contains(body, "can no longer be changed") {
		t.Errorf("page of an expired message offers an expiry change")
	}
}

// TestManageEscapes: a subject, file name and recipient full of markup are
// shown as text.
func TestManageEscapes(t *testing.T) {
	h := newHarness(t)
	evil := `"><script>alert(1)</script><img src=x onerror=alert(2)>`
	m := h.addMessage(msgSpec{subject: "Q3 " + evil, files: []string{evil + ".pdf"},
		recipients: []string{`"` + evil + `"@example.net`}})
	h.download(m.tokens[0])
	resp, body, _ := h.managePage(h.browser(false), m.manage, nil)
	mustStatus(t, resp, http.StatusOK)
	if strings.Contains(body, "<script>") || strings.Contains(body, "<img") {
		t.Fatalf("markup not escaped:\n%s", body)
	}
	if n := strings.Count(body, "&lt;script&gt;alert(1)&lt;/script&gt;"); n < 3 {
		t.Errorf("escaped text shown %d times, want subject, recipient and file name", n)
	}
	// The confirmation after an action is a fixed sentence chosen by
	// ?done=, never the query's text.
	_, b := h.do(h.browser(false), http.MethodGet, "/s/"+m.manage+"?done=%3Cscript%3Ealert(3)%3C/script%3E", nil, nil)
	if strings.Contains(string(b), "alert(3)") || strings.Contains(string(b), `class="done"`) {
		t.Errorf("?done= reflected")
	}
}

// TestAccessRecordingNeverFailsADownload: with the store refusing to
// record accesses (the file's metadata is gone from under a running
// request in real life), downloads still work; the failure is logged.
func TestAccessRecordingNeverFailsADownload(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Store = failingAccessStore{o.Store} })
	m := h.addMessage(msgSpec{files: []string{"a.pdf"}})
	if got := h.download(m.tokens[0]); !bytes.Equal(got, m.content[0]) {
		t.Fatalf("download with access recording failing: %q", got)
	}
	if !strings.Contains(h.logs.String(), "access not recorded") {
		t.Errorf("failure not logged")
	}
}

type failingAccessStore struct{ store.Store }

func (failingAccessStore) RecordAccess(context.Context, store.Access) (bool, error) {
	return false, errors.New("disk I/O error")
}

func newHTTPTestServer(t testing.TB, s *Server) *httptest.Server {
	hs := httptest.NewUnstartedServer(nil)
	hs.Config = s.HTTPServer(nil)
	hs.Start()
	t.Cleanup(s.Close)
	t.Cleanup(hs.Close)
	return hs
}

// TestManageConcurrentRevokeAll: 20 tabs withdrawing all files at once
// all succeed, and each link is audited as revoked exactly once.
func TestManageConcurrentRevokeAll(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Now = time.Now })
	h.clock.Set(time.Now()) // the message's creation
	m := h.addMessage(msgSpec{files: []string{"a.pdf", "b.pdf", "c.pdf"}})
	type tab struct {
		c    *http.Client
		csrf string
	}
	var tabs []tab
	for range 20 {
		c := h.browser(false)
		_, _, csrf := h.managePage(c, m.manage, nil)
		tabs = append(tabs, tab{c, csrf})
	}
	var wg sync.WaitGroup
	statuses := make(chan int, len(tabs))
	for _, tb := range tabs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			form := url.Values{csrfField: {tb.csrf}, "action": {"revoke-all"}}
			req, _ := http.NewRequest(http.MethodPost, h.http.URL+"/s/"+m.manage, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := tb.c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusSeeOther {
			t.Errorf("a tab got %d, want 303", s)
		}
	}
	revoked := h.events.ofType(audit.TypeLinkRevoked)
	seen := map[string]int{}
	for _, e := range revoked {
		seen[e.LinkID]++
	}
	if len(revoked) != 3 || len(seen) != 3 {
		t.Errorf("link.revoked per link: %v, want each of the 3 once", seen)
	}
	for _, tok := range m.tokens {
		if s := landingStatus(h, tok); s != http.StatusGone {
			t.Errorf("link after concurrent revoke-all: %d", s)
		}
	}
}
