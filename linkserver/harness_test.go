package linkserver

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/redistest"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/store/redisstore"
	"github.com/attachgate/attachgate/vault"
)

// testStart is a Monday; expiry shown in testZone is 19:00 the next Monday.
var (
	testStart = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	testZone  = time.FixedZone("JST", 9*60*60)
)

// eventLog is a test audit.Recorder: it keeps events for assertions, or
// only counts them in benchmarks. failWith makes Record fail.
type eventLog struct {
	mu       sync.Mutex
	keep     bool
	events   []audit.Event
	count    int
	failWith error
}

func (l *eventLog) Record(_ context.Context, e audit.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failWith != nil {
		return l.failWith
	}
	l.count++
	if l.keep {
		l.events = append(l.events, e)
	}
	return nil
}

func (l *eventLog) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failWith = err
}

func (l *eventLog) ofType(typ audit.EventType) []audit.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []audit.Event
	for _, e := range l.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func (l *eventLog) all() []audit.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]audit.Event(nil), l.events...)
}

// testClock is Options.Now under the test's control.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// lockedBuffer collects the server's log for leak checks.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is one link server on a real socket, over a real SQLite store
// and a real encrypted blob store in a temp dir.
type harness struct {
	t      testing.TB
	store  store.Store
	blobs  *vault.BlobStore
	events *eventLog
	clock  *testClock
	logs   *lockedBuffer
	server *Server
	http   *httptest.Server
	closed chan string // the client address of each connection the server closed
}

func newHarness(t testing.TB, configure ...func(*Options)) *harness {
	t.Helper()
	return newHarnessOn(t, backendSQLite, configure...)
}

// Store backends a harness can run on.
const (
	backendSQLite = "sqlite"
	backendRedis  = "redis" // a real redis-server started for the test
)

func newHarnessOn(t testing.TB, backend string, configure ...func(*Options)) *harness {
	t.Helper()
	dir := t.TempDir()
	var st store.Store
	switch backend {
	case backendSQLite:
		sq, err := store.OpenSQLite(filepath.Join(dir, "attachgate.db"))
		if err != nil {
			t.Fatal(err)
		}
		st = sq
	case backendRedis:
		srv := redistest.Start(t)
		rs, err := redisstore.Open(context.Background(), redisstore.Options{URL: srv.URL()})
		if err != nil {
			t.Fatal(err)
		}
		st = rs
	default:
		t.Fatalf("unknown backend %q", backend)
	}
	t.Cleanup(func() { st.Close() })
	ring, err := vault.OpenKeyRing(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := vault.NewBlobStore(filepath.Join(dir, "blobs"), ring)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t:      t,
		store:  st,
		blobs:  blobs,
		events: &eventLog{keep: true},
		clock:  &testClock{now: testStart},
		logs:   &lockedBuffer{},
	}
	opts := Options{
		Store:    st,
		Blobs:    blobs,
		MACKey:   ring.MACKey(),
		Audit:    h.events,
		Logger:   slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:      h.clock.Now,
		Location: testZone,
	}
	for _, c := range configure {
		c(&opts)
	}
	h.server, err = New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.http = httptest.NewUnstartedServer(nil)
	h.http.Config = h.server.HTTPServer(nil)
	h.closed = make(chan string, 1024)
	h.http.Config.ConnState = func(c net.Conn, state http.ConnState) {
		if state == http.StateClosed {
			select {
			case h.closed <- c.RemoteAddr().String():
			default:
			}
		}
	}
	h.http.Start()
	t.Cleanup(h.server.Close)
	t.Cleanup(h.http.Close)
	return h
}

// linkSpec describes a file and its link to create.
type linkSpec struct {
	name         string
	content      []byte
	sender       string
	maxDownloads int
	expiresIn    time.Duration // 0 = a week
	fileExpires  time.Duration // 0 = as the link
}

type testLink struct {
	token string
	id    string
	file  store.File
}

func (h *harness) addLink(spec linkSpec) testLink {
	h.t.Helper()
	if spec.expiresIn == 0 {
		spec.expiresIn = 7 * 24 * time.Hour
	}
	if spec.sender == "" {
		spec.sender = "alice@example.com"
	}
	now := h.clock.Now()
	fileID := store.NewID()
	info, err := h.blobs.Put(fileID, bytes.NewReader(spec.content))
	if err != nil {
		h.t.Fatal(err)
	}
	token, tokenHash, err := store.NewToken()
	if err != nil {
		h.t.Fatal(err)
	}
	msg := store.Message{
		ID:         store.NewID(),
		MessageID:  "<" + store.NewID() + "@example.com>",
		Sender:     spec.sender,
		Recipients: []string{"bob@example.net"},
		ClientAddr: "192.0.2.1",
		CreatedAt:  now,
	}
	fileExpires := spec.expiresIn
	if spec.fileExpires != 0 {
		fileExpires = spec.fileExpires
	}
	file := store.File{
		ID:          fileID,
		MessageID:   msg.ID,
		Name:        spec.name,
		ContentType: "application/pdf",
		Size:        info.Size,
		SHA256:      info.SHA256,
		KeyID:       info.KeyID,
		CreatedAt:   now,
		ExpiresAt:   now.Add(fileExpires),
	}
	link := store.Link{
		ID:           store.NewID(),
		FileID:       fileID,
		TokenHash:    tokenHash,
		CreatedAt:    now,
		ExpiresAt:    now.Add(spec.expiresIn),
		MaxDownloads: spec.maxDownloads,
	}
	if err := h.store.CreateMessage(context.Background(), msg, []store.File{file}, []store.Link{link}); err != nil {
		h.t.Fatal(err)
	}
	return testLink{token: token, id: link.ID, file: file}
}

func (h *harness) downloads(linkID string) int {
	h.t.Helper()
	v, err := h.store.LinkByID(context.Background(), linkID)
	if err != nil {
		h.t.Fatal(err)
	}
	return v.Link.Downloads
}

// browser returns a client with a cookie jar; follow decides whether it
// follows redirects.
func (h *harness) browser(follow bool) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		h.t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

// do sends a request and returns the response with its body read.
func (h *harness) do(c *http.Client, method, path string, header http.Header, body io.Reader) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.http.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := c.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp, b
}

var (
	formRE = regexp.MustCompile(`<form method="post" action="([^"]*)">`)
	csrfRE = regexp.MustCompile(`<input type="hidden" name="csrf" value="([^"]*)">`)
)

// landing GETs the landing page and returns the form's action and CSRF
// field.
func (h *harness) landing(c *http.Client, token string) (action, csrf string) {
	h.t.Helper()
	resp, body := h.do(c, http.MethodGet, "/d/"+token, nil, nil)
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("landing: status %d, body %s", resp.StatusCode, body)
	}
	a := formRE.FindSubmatch(body)
	f := csrfRE.FindSubmatch(body)
	if a == nil || f == nil {
		h.t.Fatalf("landing: no form in %s", body)
	}
	return string(a[1]), string(f[1])
}

// submit POSTs the landing page's form as a browser would.
func (h *harness) submit(c *http.Client, action, csrf string) (*http.Response, []byte) {
	h.t.Helper()
	form := url.Values{csrfField: {csrf}}
	return h.do(c, http.MethodPost, action,
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
		strings.NewReader(form.Encode()))
}

// signedURL runs GET and POST and returns the signed file path.
func (h *harness) signedURL(token string) string {
	h.t.Helper()
	c := h.browser(false)
	action, csrf := h.landing(c, token)
	resp, body := h.submit(c, action, csrf)
	if resp.StatusCode != http.StatusSeeOther {
		h.t.Fatalf("POST: status %d, want 303; body %s", resp.StatusCode, body)
	}
	return resp.Header.Get("Location")
}

func mustStatus(t testing.TB, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want)
	}
}

var errAuditDown = errors.New("audit database is locked")

// jarCookie returns the ag_csrf cookie the client's jar holds for base.
func jarCookie(t testing.TB, c *http.Client, base string) string {
	t.Helper()
	u, err := url.Parse(base + csrfCookiePath)
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == csrfCookie {
			return ck.Value
		}
	}
	t.Fatal("no ag_csrf cookie in the jar")
	return ""
}

// groupedHex is the SHA-256 as the landing page shows it: groups of
// shaGroup characters with <wbr> between them.
func groupedHex(sum []byte) string {
	h := hex.EncodeToString(sum)
	var parts []string
	for len(h) > shaGroup {
		parts = append(parts, h[:shaGroup])
		h = h[shaGroup:]
	}
	return strings.Join(append(parts, h), "<wbr>")
}
