package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
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
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, "attachgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := func() time.Time { return testNow }
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
	id := store.NewID()
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
		wantType, wantReason       string
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
		types = append(types, e.Type+"/"+e.Actor)
	}
	if got := strings.Join(types, " "); got != TypeQuarantineRelease+"/admin:ops "+audit.TypeMailReleased+"/admin:ops" {
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
