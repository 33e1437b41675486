package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
)

// testNow is 10:00 in testZone; the whole test day is 2026-03-02 there.
var (
	testZone = time.FixedZone("JST", 9*60*60)
	testNow  = time.Date(2026, 3, 2, 10, 0, 0, 0, testZone)
)

// Test tokens. Direct connections come from 127.0.0.1; "remote" is only
// allowed from 192.0.2.0/24, reachable in tests through a trusted proxy's
// X-Forwarded-For.
const (
	opsSecret     = "ops-secret-7f3a9c1e5b2d4f6a8c0e2b4d6f8a0c2e"
	auditorSecret = "auditor-secret-1b3d5f7a9c2e4a6c8e0b2d4f6a8c0e"
	remoteSecret  = "remote-secret-9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c"
)

func testTokens() []Token {
	hash := func(s string) []byte {
		sum := sha256.Sum256([]byte(s))
		return sum[:]
	}
	return []Token{
		{Name: "ops", SHA256: hash(opsSecret), Role: RoleAdmin,
			Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16")}},
		{Name: "auditor", SHA256: hash(auditorSecret), Role: RoleAuditor,
			Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		{Name: "remote", SHA256: hash(remoteSecret), Role: RoleAdmin,
			Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
	}
}

// switchableRecorder passes events to the real audit log until told to
// fail, to show that a call which cannot be audited is not carried out.
type switchableRecorder struct {
	next audit.Recorder
	fail atomic.Bool
}

var errAuditDown = errors.New("audit log down (test)")

func (r *switchableRecorder) Record(ctx context.Context, e audit.Event) error {
	if r.fail.Load() {
		return errAuditDown
	}
	return r.next.Record(ctx, e)
}

// harness is an admin API on a real socket over a real SQLite store and
// audit log.
type harness struct {
	t        *testing.T
	store    *store.SQLite
	log      *audit.SQLiteLog
	recorder *switchableRecorder
	url      string
}

type harnessOptions struct {
	trustedProxies  []netip.Prefix
	metrics         http.Handler
	metricsNetworks []netip.Prefix
	ready           func(st *store.SQLite) []ReadyCheck
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "attachgate.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	now := func() time.Time { return testNow }
	log, err := audit.NewSQLite(st.DB(), audit.Options{Now: now, Location: testZone})
	if err != nil {
		t.Fatalf("open audit log: %v", err)
	}
	rec := &switchableRecorder{next: log}
	var ready []ReadyCheck
	if o.ready != nil {
		ready = o.ready(st)
	}
	srv, err := New(Options{
		Metrics:         o.metrics,
		MetricsNetworks: o.metricsNetworks,
		Ready:           ready,
		Tokens:          testTokens(),
		TrustedProxies:  o.trustedProxies,
		Store:           st,
		Audit:           rec,
		Export:          log,
		Location:        testZone,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:             now,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &harness{t: t, store: st, log: log, recorder: rec, url: ts.URL}
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errorText decodes a {"error": "..."} body.
func (r response) errorText(t *testing.T) string {
	t.Helper()
	var body struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Error == nil {
		t.Fatalf("want a JSON error body, got %q (%v)", r.body, err)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error Content-Type = %q, want application/json", ct)
	}
	return *body.Error
}

// call sends one request. secret "" sends no Authorization header; extra
// headers are set as given (X-Forwarded-For may carry several lines
// separated by "\n").
func (h *harness) call(method, path, secret string, extra map[string]string) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, nil)
	if err != nil {
		h.t.Fatalf("new request: %v", err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	req.Header.Set("User-Agent", "admin-test/1.0")
	for k, v := range extra {
		for _, line := range strings.Split(v, "\n") {
			req.Header.Add(k, line)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// exportedEvent is one line of a JSONL export.
type exportedEvent struct {
	Seq        int64           `json:"seq"`
	Time       string          `json:"time"`
	Type       audit.EventType `json:"type"`
	Actor      string          `json:"actor"`
	ClientAddr string          `json:"client_addr"`
	UserAgent  string          `json:"user_agent"`
	Sender     string          `json:"sender"`
	Recipients []string        `json:"recipients"`
	FileID     string          `json:"file_id"`
	FileName   string          `json:"file_name"`
	LinkID     string          `json:"link_id"`
	Reason     string          `json:"reason"`
	Detail     string          `json:"detail"`
}

// events reads the whole audit log through the exporter.
func (h *harness) events() []exportedEvent {
	h.t.Helper()
	var buf bytes.Buffer
	if err := h.log.Export(context.Background(), audit.Query{}, &buf, audit.FormatJSONL, false); err != nil {
		h.t.Fatalf("export audit log: %v", err)
	}
	return parseJSONL(h.t, buf.Bytes())
}

// eventsOfType returns the events of one type, oldest first.
func (h *harness) eventsOfType(typ audit.EventType) []exportedEvent {
	h.t.Helper()
	var out []exportedEvent
	for _, e := range h.events() {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// lastEvent is the newest event in the log.
func (h *harness) lastEvent() exportedEvent {
	h.t.Helper()
	all := h.events()
	if len(all) == 0 {
		h.t.Fatal("audit log is empty")
	}
	return all[len(all)-1]
}

func parseJSONL(t *testing.T, data []byte) []exportedEvent {
	t.Helper()
	var out []exportedEvent
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e exportedEvent
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("bad JSONL line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// testLink is a link created in the store.
type testLink struct {
	id, fileID, fileName, sha256 string
	messageID                    string
}

// createLink stores a message with one file and its link.
func (h *harness) createLink(fileName string) testLink {
	h.t.Helper()
	_, tokenHash, err := store.NewToken()
	if err != nil {
		h.t.Fatal(err)
	}
	created := testNow.Add(-time.Hour)
	msg := store.Message{
		ID: store.NewID(), MessageID: "<m-" + fileName + "@example.com>",
		Sender: "alice@example.com", Recipients: []string{"bob@example.net", "carol@example.org"},
		ClientAddr: "127.0.0.1", CreatedAt: created,
	}
	sum := sha256.Sum256([]byte(fileName))
	file := store.File{
		ID: store.NewID(), MessageID: msg.ID, Name: fileName, ContentType: "application/pdf",
		Size: 12345, SHA256: hex.EncodeToString(sum[:]), KeyID: "k1",
		CreatedAt: created, ExpiresAt: testNow.Add(7 * 24 * time.Hour),
	}
	link := store.Link{
		ID: store.NewID(), FileID: file.ID, TokenHash: tokenHash,
		CreatedAt: created, ExpiresAt: testNow.Add(7 * 24 * time.Hour), MaxDownloads: 5,
	}
	if err := h.store.CreateMessage(context.Background(), msg, []store.File{file}, []store.Link{link}); err != nil {
		h.t.Fatalf("create message: %v", err)
	}
	return testLink{id: link.ID, fileID: file.ID, fileName: fileName, sha256: file.SHA256, messageID: msg.ID}
}

// seedMailEvents records mail events on 2026-03-01 and 2026-03-02 (and one
// on 2026-02-28, outside the ranges the tests export).
func (h *harness) seedMailEvents() {
	h.t.Helper()
	events := []audit.Event{
		{Time: time.Date(2026, 2, 28, 12, 0, 0, 0, testZone), Type: audit.TypeMailReceived, Actor: "smtp",
			Sender: "alice@example.com", Recipients: []string{"bob@example.net"}},
		{Time: time.Date(2026, 3, 1, 9, 0, 0, 0, testZone), Type: audit.TypeMailReceived, Actor: "smtp",
			Sender: "alice@example.com", Recipients: []string{"bob@example.net"}, Size: 2048},
		{Time: time.Date(2026, 3, 1, 9, 0, 1, 0, testZone), Type: audit.TypeFileStored, Actor: "smtp",
			Sender: "alice@example.com", FileName: "請求書.pdf", Size: 1024},
		{Time: time.Date(2026, 3, 2, 8, 0, 0, 0, testZone), Type: audit.TypeMailReceived, Actor: "smtp",
			Sender: "dave@example.com", Recipients: []string{"erin@example.net"}, Size: 4096},
		{Time: time.Date(2026, 3, 2, 8, 30, 0, 0, testZone), Type: audit.TypeDownloadOK, Actor: "web",
			ClientAddr: "198.51.100.9", FileName: "請求書.pdf"},
	}
	for _, e := range events {
		if err := h.log.Record(context.Background(), e); err != nil {
			h.t.Fatalf("seed %s: %v", e.Type, err)
		}
	}
}
