package admin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/quarantine"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

// rawDeliverer relays a held message as it is; the real one (the pipeline)
// is tested end to end in smtpd.
type rawDeliverer struct{}

func (rawDeliverer) Deliver(_ context.Context, _ quarantine.Item, msg quarantine.Source, hop relay.Session, _ string) (string, error) {
	rd, err := msg.Open()
	if err != nil {
		return "", err
	}
	defer rd.Close()
	w, err := hop.Data()
	if err != nil {
		return "", &quarantine.DeliveryError{Op: "DATA", Err: err}
	}
	if _, err := io.Copy(w, rd); err != nil {
		return "", &quarantine.DeliveryError{Op: "DATA", Err: err}
	}
	reply, err := w.Close()
	if err != nil {
		return "", &quarantine.DeliveryError{Op: "end of DATA", Err: err}
	}
	return reply, nil
}

// quarantineHarness is the admin API with a real quarantine (SQLite index,
// encrypted blobs) releasing to a real SMTP next hop.
type quarantineHarness struct {
	*harness
	held *quarantine.Manager
	next *smtptest.Server
}

func newQuarantineHarness(t *testing.T) *quarantineHarness {
	t.Helper()
	return newQuarantineHarnessAt(t, func() time.Time { return testNow })
}

// newQuarantineHarnessAt is newQuarantineHarness on the clock now.
func newQuarantineHarnessAt(t *testing.T, now func() time.Time) *quarantineHarness {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, "attachgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log, err := audit.NewSQLite(st.DB(), audit.Options{Now: now, Location: testZone})
	if err != nil {
		t.Fatal(err)
	}
	rec := &switchableRecorder{next: log}
	ring, err := vault.OpenKeyRing(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	next := smtptest.NewServer(t, smtptest.Behaviour{})
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	held, err := quarantine.Open(context.Background(), quarantine.Options{DB: st.DB(), Dir: filepath.Join(dir, "quarantine"),
		Ring: ring, Audit: rec, Hop: &relay.SMTPHop{Address: next.Addr, HeloName: "gw.test", Timeout: 10 * time.Second},
		Deliverer: rawDeliverer{}, Now: now, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Tokens: testTokens(), Store: st, Audit: rec, Export: log, Quarantine: held,
		Location: testZone, Logger: discard, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &quarantineHarness{harness: &harness{t: t, store: st, log: log, recorder: rec, url: ts.URL}, held: held, next: next}
}

func (h *quarantineHarness) hold(action policies.Action) string {
	h.t.Helper()
	return h.holdAs(store.NewID(), action)
}

// holdAs holds a message under id.
func (h *quarantineHarness) holdAs(id string, action policies.Action) string {
	h.t.Helper()
	msg := "Subject: held\r\n\r\nbody\r\n"
	if _, err := h.held.Hold(context.Background(), quarantine.Item{ID: id, HeaderID: "<h@example.com>", From: "alice@example.com",
		To: []string{"bob@example.net"}, ClientAddr: "192.0.2.10", Action: action, Rule: "review"}, strings.NewReader(msg)); err != nil {
		h.t.Fatal(err)
	}
	return id
}

func TestQuarantineRoutes(t *testing.T) {
	h := newQuarantineHarness(t)
	idQ := h.hold(policies.Quarantine)
	idH := h.hold(policies.Hold)

	// Anyone with a token lists; the call is recorded.
	resp := h.call("GET", "/admin/quarantine", auditorSecret, nil)
	if resp.status != 200 {
		t.Fatalf("list: %d %s", resp.status, resp.body)
	}
	var items []map[string]any
	if err := json.Unmarshal(resp.body, &items); err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0]["id"] != idQ || items[0]["action"] != "quarantine" || items[0]["release_at"] != nil ||
		items[0]["rule"] != "review" || items[0]["held_at"] != "2026-03-02T10:00:00+09:00" {
		t.Fatalf("list = %s", resp.body)
	}
	if items[1]["release_at"] != "2026-03-02T11:00:00+09:00" {
		t.Errorf("hold release_at = %v", items[1]["release_at"])
	}
	if e := h.lastEvent(); e.Type != TypeQuarantineList || e.Actor != "admin:auditor" || e.Detail != "GET /admin/quarantine" {
		t.Errorf("list event %+v", e)
	}

	cases := []struct {
		name, method, path, secret string
		status                     int
		wantType                   audit.EventType
		wantReason                 string
	}{
		{"auditor may not release", "POST", "/admin/quarantine/" + idQ + "/release", auditorSecret, 403, TypeDenied, ReasonRole},
		{"auditor may not delete", "POST", "/admin/quarantine/" + idQ + "/delete", auditorSecret, 403, TypeDenied, ReasonRole},
		{"no token", "GET", "/admin/quarantine", "", 401, TypeDenied, ReasonNoToken},
		{"wrong method", "GET", "/admin/quarantine/" + idQ + "/release", opsSecret, 405, TypeDenied, ReasonMethod},
		{"list by POST", "POST", "/admin/quarantine", opsSecret, 405, TypeDenied, ReasonMethod},
		{"unknown id", "POST", "/admin/quarantine/01900000-0000-7000-8000-000000000000/release", opsSecret, 404, TypeQuarantineRelease, reasonUnknownHeld},
		{"garbage id", "POST", "/admin/quarantine/..%2f..%2fetc/delete", opsSecret, 404, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.call(tc.method, tc.path, tc.secret, nil)
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.status, tc.status, resp.body)
			}
			if tc.wantType == "" {
				return
			}
			if e := h.lastEvent(); e.Type != tc.wantType || e.Reason != tc.wantReason {
				t.Errorf("event %s/%q, want %s/%q", e.Type, e.Reason, tc.wantType, tc.wantReason)
			}
		})
	}
	if n := len(h.next.Messages()); n != 0 {
		t.Fatalf("refused calls released %d messages", n)
	}

	// Release: recorded before, relayed, gone from the list.
	resp = h.call("POST", "/admin/quarantine/"+idQ+"/release", opsSecret, nil)
	if resp.status != 200 {
		t.Fatalf("release: %d %s", resp.status, resp.body)
	}
	var rel releaseResult
	json.Unmarshal(resp.body, &rel)
	if rel.ID != idQ || !strings.HasPrefix(rel.Reply, "250 ") || rel.ReleasedAt != "2026-03-02T10:00:00+09:00" {
		t.Errorf("release answer %s", resp.body)
	}
	if msgs := h.next.Messages(); len(msgs) != 1 || !bytes.Contains(msgs[0].Data, []byte("Subject: held")) {
		t.Fatalf("next hop got %+v", msgs)
	}
	types := []string{}
	for _, e := range h.events()[len(h.events())-2:] {
		types = append(types, string(e.Type)+"/"+e.Actor)
	}
	if got := strings.Join(types, " "); got != string(TypeQuarantineRelease)+"/admin:ops "+string(audit.TypeMailReleased)+"/admin:ops" {
		t.Errorf("release events: %s", got)
	}
	if resp := h.call("POST", "/admin/quarantine/"+idQ+"/release", opsSecret, nil); resp.status != 404 {
		t.Errorf("release again: %d", resp.status)
	}

	// Delete.
	resp = h.call("POST", "/admin/quarantine/"+idH+"/delete", opsSecret, nil)
	if resp.status != 200 || !strings.Contains(string(resp.body), `"id":"`+idH+`"`) {
		t.Fatalf("delete: %d %s", resp.status, resp.body)
	}
	all := h.events()
	if got := all[len(all)-2].Type + " " + all[len(all)-1].Type; got != TypeQuarantineDelete+" "+audit.TypeMailDeleted {
		t.Errorf("delete events: %s", got)
	}
	if resp := h.call("GET", "/admin/quarantine", opsSecret, nil); strings.TrimSpace(string(resp.body)) != "[]" {
		t.Errorf("list after all: %s", resp.body)
	}
	if n := len(h.next.Messages()); n != 1 {
		t.Errorf("the deleted message went out")
	}
}

func TestQuarantineReleaseToFailingNextHop(t *testing.T) {
	h := newQuarantineHarness(t)
	id := h.hold(policies.Quarantine)
	h.next.SetBehaviour(smtptest.Behaviour{DropAtDataEnd: true})
	resp := h.call("POST", "/admin/quarantine/"+id+"/release", opsSecret, nil)
	if resp.status != http.StatusBadGateway || !strings.Contains(resp.errorText(t), "stays held") {
		t.Fatalf("release: %d %s", resp.status, resp.body)
	}
	if _, err := h.held.Get(context.Background(), id); err != nil {
		t.Fatalf("item gone after a failed release: %v", err)
	}
}

func TestQuarantineCallsFailWhenTheyCannotBeAudited(t *testing.T) {
	h := newQuarantineHarness(t)
	id := h.hold(policies.Quarantine)
	h.recorder.fail.Store(true)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/admin/quarantine"},
		{"POST", "/admin/quarantine/" + id + "/release"},
		{"POST", "/admin/quarantine/" + id + "/delete"},
	} {
		resp := h.call(tc.method, tc.path, opsSecret, nil)
		if resp.status != http.StatusServiceUnavailable || !strings.Contains(resp.errorText(t), "audit log unavailable") {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, resp.status, resp.body)
		}
	}
	h.recorder.fail.Store(false)
	if _, err := h.held.Get(context.Background(), id); err != nil {
		t.Errorf("item touched although the call could not be audited: %v", err)
	}
	if n := len(h.next.Messages()); n != 0 {
		t.Errorf("released although the call could not be audited")
	}
}

func TestQuarantineRoutesAbsentWithoutQuarantine(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	if resp := h.call("GET", "/admin/quarantine", opsSecret, nil); resp.status != 404 {
		t.Errorf("status %d, want 404 (no route)", resp.status)
	}
}

// tickingClock moves on by a millisecond at each look, so every message
// is held at its own instant.
type tickingClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *tickingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

// TestQuarantineListPages pages through 250 held messages 100 at a time,
// following the Link header as a client would, while messages are held,
// released and deleted between pages: every message held before its page
// was reached comes exactly once, oldest first.
func TestQuarantineListPages(t *testing.T) {
	h := newQuarantineHarnessAt(t, (&tickingClock{now: testNow}).Now)
	// IDs made first sort before the 250: held later, they must come
	// after them all the same (the list is by held time, then ID).
	var late []string
	for i := 0; i < 10; i++ {
		late = append(late, store.NewID())
	}
	var want []string
	for i := 0; i < 250; i++ {
		want = append(want, h.hold(policies.Quarantine))
	}
	if late[len(late)-1] >= want[0] {
		t.Fatalf("premise: ID %s made earlier sorts after %s", late[len(late)-1], want[0])
	}

	// Without limit: the first 100.
	resp := h.call("GET", "/admin/quarantine", auditorSecret, nil)
	var items []heldInfo
	if resp.status != 200 || json.Unmarshal(resp.body, &items) != nil || len(items) != defaultQuarantineLimit {
		t.Fatalf("default page: status %d, %d items, body %.200s", resp.status, len(items), resp.body)
	}

	var seen []string
	var pages []int
	path := "/admin/quarantine?limit=100"
	for path != "" {
		if len(pages) > 10 {
			t.Fatal("paging does not end")
		}
		resp := h.call("GET", path, auditorSecret, nil)
		var items []heldInfo
		if resp.status != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.status, resp.body)
		}
		if err := json.Unmarshal(resp.body, &items); err != nil {
			t.Fatalf("GET %s: %v in %.200s", path, err, resp.body)
		}
		pages = append(pages, len(items))
		for _, it := range items {
			seen = append(seen, it.ID)
		}
		next := resp.header.Get(NextCursorHeader)
		link := resp.header.Get("Link")
		path = ""
		if next == "" {
			if link != "" {
				t.Errorf("last page has Link %q", link)
			}
			break
		}
		target, ok := strings.CutPrefix(link, "<")
		target, _, ok2 := strings.Cut(target, `>; rel="next"`)
		if !ok || !ok2 || !strings.Contains(target, "after="+next) || !strings.Contains(target, "limit=100") {
			t.Fatalf("Link %q does not lead to after=%s&limit=100", link, next)
		}
		path = target
		switch len(pages) {
		case 1:
			// Held after page 1 was read: these come at the end.
			for _, id := range late[:5] {
				want = append(want, h.holdAs(id, policies.Quarantine))
			}
			// The item the cursor names goes away (released); the cursor
			// still works. One not yet listed is deleted: it never shows.
			if r := h.call("POST", "/admin/quarantine/"+items[len(items)-1].ID+"/release", opsSecret, nil); r.status != 200 {
				t.Fatalf("release: %d %s", r.status, r.body)
			}
			gone := want[150]
			if r := h.call("POST", "/admin/quarantine/"+gone+"/delete", opsSecret, nil); r.status != 200 {
				t.Fatalf("delete: %d %s", r.status, r.body)
			}
			want = slices.DeleteFunc(want, func(id string) bool { return id == gone })
		case 2:
			for _, id := range late[5:] {
				want = append(want, h.holdAs(id, policies.Quarantine))
			}
		}
	}
	// 250 - 1 deleted + 10 held on the way.
	if !slices.Equal(pages, []int{100, 100, 59}) {
		t.Errorf("page sizes %v, want [100 100 59]", pages)
	}
	if !slices.Equal(seen, want) {
		t.Errorf("paged %d IDs, want %d in order", len(seen), len(want))
		for i := range min(len(seen), len(want)) {
			if seen[i] != want[i] {
				t.Fatalf("first difference at %d: %s, want %s", i, seen[i], want[i])
			}
		}
	}
	// The paging parameters are on record with the list calls.
	lists := h.eventsOfType(TypeQuarantineList)
	if got := lists[len(lists)-1].Detail; !strings.HasPrefix(got, "GET /admin/quarantine?after=") || !strings.HasSuffix(got, "&limit=100") {
		t.Errorf("detail of the last list call = %q", got)
	}

	// The largest page there is takes the rest.
	resp = h.call("GET", "/admin/quarantine?limit=1000", auditorSecret, nil)
	if err := json.Unmarshal(resp.body, &items); resp.status != 200 || err != nil || len(items) != len(want)-1 ||
		resp.header.Get(NextCursorHeader) != "" {
		t.Errorf("limit=1000: status %d, %d items (want %d), next %q", resp.status, len(items), len(want)-1,
			resp.header.Get(NextCursorHeader))
	}
}

// TestQuarantineListRefusesBadQueries: a bad limit or cursor, a repeated
// or unknown parameter is a 400 naming the parameter, on record; nothing
// is listed.
func TestQuarantineListRefusesBadQueries(t *testing.T) {
	h := newQuarantineHarness(t)
	h.hold(policies.Quarantine)
	for _, tc := range []struct {
		query, want string
	}{
		{"limit=0", "limit:"},
		{"limit=-1", "limit:"},
		{"limit=1001", "limit:"},
		{"limit=ten", "limit:"},
		{"limit=", "limit:"},
		{"limit=1&limit=2", "limit: given 2 times"},
		{"after=", "after:"},
		{"after=not-a-cursor!", "after:"},
		{"after=" + base64.RawURLEncoding.EncodeToString([]byte("yesterday.x")), "after:"},
		{"limt=10", `unknown parameter "limt"`},
		{"limit=10&page=2&offset=5", `unknown parameters "offset", "page"`},
		{"access_token=s3cret", `unknown parameter "access_token"`},
	} {
		t.Run(tc.query, func(t *testing.T) {
			resp := h.call("GET", "/admin/quarantine?"+tc.query, auditorSecret, nil)
			if resp.status != 400 {
				t.Fatalf("status %d, want 400: %s", resp.status, resp.body)
			}
			if msg := resp.errorText(t); !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not say %q", msg, tc.want)
			}
			e := h.lastEvent()
			if e.Type != TypeQuarantineList || e.Reason != "bad request" || strings.Contains(e.Detail, "s3cret") {
				t.Errorf("recorded %+v", e)
			}
		})
	}
}
