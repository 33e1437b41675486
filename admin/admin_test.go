package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
)

const exportToday = "/admin/audit?from=2026-03-02&to=2026-03-02&format=jsonl"

func TestAuthentication(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	link := h.createLink("report.pdf")
	revokePath := "/admin/links/" + link.id + "/revoke"

	cases := []struct {
		name        string
		method      string
		path        string
		secret      string
		header      map[string]string
		wantStatus  int
		wantType    audit.EventType // newest audit event after the call
		wantActor   string
		wantReason  string
		wantBearer  bool // WWW-Authenticate: Bearer ...
		wantErrText string
	}{
		{name: "no token", method: "GET", path: exportToday,
			wantStatus: 401, wantType: TypeDenied, wantActor: "admin:-", wantReason: ReasonNoToken, wantBearer: true,
			wantErrText: "missing bearer token"},
		{name: "bad token", method: "GET", path: exportToday, secret: "not-a-configured-token",
			wantStatus: 401, wantType: TypeDenied, wantActor: "admin:-", wantReason: ReasonBadToken, wantBearer: true,
			wantErrText: "invalid bearer token"},
		{name: "basic credentials are not a token", method: "GET", path: exportToday,
			header:     map[string]string{"Authorization": "Basic b3BzOnNlY3JldA=="},
			wantStatus: 401, wantType: TypeDenied, wantActor: "admin:-", wantReason: ReasonBadToken, wantBearer: true},
		{name: "empty bearer token", method: "GET", path: exportToday,
			header:     map[string]string{"Authorization": "Bearer "},
			wantStatus: 401, wantType: TypeDenied, wantActor: "admin:-", wantReason: ReasonBadToken, wantBearer: true},
		{name: "lower-case scheme", method: "GET", path: exportToday,
			header:     map[string]string{"Authorization": "bearer " + auditorSecret},
			wantStatus: 200, wantType: TypeAuditExport, wantActor: "admin:auditor"},
		{name: "good token from the wrong network", method: "GET", path: exportToday, secret: remoteSecret,
			wantStatus: 403, wantType: TypeDenied, wantActor: "admin:remote", wantReason: ReasonNetwork,
			wantErrText: "may not be used from 127.0.0.1"},
		{name: "auditor may not revoke", method: "POST", path: revokePath, secret: auditorSecret,
			wantStatus: 403, wantType: TypeDenied, wantActor: "admin:auditor", wantReason: ReasonRole},
		{name: "auditor may not use pprof", method: "GET", path: "/debug/pprof/", secret: auditorSecret,
			wantStatus: 403, wantType: TypeDenied, wantActor: "admin:auditor", wantReason: ReasonRole},
		{name: "auditor exports", method: "GET", path: exportToday, secret: auditorSecret,
			wantStatus: 200, wantType: TypeAuditExport, wantActor: "admin:auditor"},
		{name: "auditor views a link", method: "GET", path: "/admin/links/" + link.id, secret: auditorSecret,
			wantStatus: 200, wantType: TypeLinkView, wantActor: "admin:auditor"},
		{name: "admin exports", method: "GET", path: exportToday, secret: opsSecret,
			wantStatus: 200, wantType: TypeAuditExport, wantActor: "admin:ops"},
		{name: "admin revokes", method: "POST", path: revokePath, secret: opsSecret,
			// link.revoked follows admin.link.revoke
			wantStatus: 200, wantType: audit.TypeLinkRevoked, wantActor: "admin:ops", wantReason: "admin"},
		{name: "unknown path needs a token", method: "GET", path: "/admin/tokens",
			wantStatus: 401, wantType: TypeDenied, wantActor: "admin:-", wantReason: ReasonNoToken, wantBearer: true},
		{name: "unknown path with a token", method: "GET", path: "/admin/tokens", secret: opsSecret,
			wantStatus: 404, wantType: TypeDenied, wantActor: "admin:ops", wantReason: ReasonNoRoute},
		{name: "wrong method", method: "GET", path: revokePath, secret: opsSecret,
			wantStatus: 405, wantType: TypeDenied, wantActor: "admin:ops", wantReason: ReasonMethod},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(h.events())
			resp := h.call(tc.method, tc.path, tc.secret, tc.header)
			if resp.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", resp.status, tc.wantStatus, resp.body)
			}
			challenge := resp.header.Get("WWW-Authenticate")
			if tc.wantBearer != strings.HasPrefix(challenge, "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want Bearer challenge: %v", challenge, tc.wantBearer)
			}
			if tc.wantStatus >= 400 {
				if msg := resp.errorText(t); !strings.Contains(msg, tc.wantErrText) {
					t.Errorf("error = %q, want it to contain %q", msg, tc.wantErrText)
				}
			}
			if n := len(h.events()); n <= before {
				t.Fatalf("call left no audit event (%d before, %d after)", before, n)
			}
			e := h.lastEvent()
			if e.Type != tc.wantType || e.Actor != tc.wantActor || e.Reason != tc.wantReason {
				t.Errorf("last event = %s actor %q reason %q, want %s actor %q reason %q",
					e.Type, e.Actor, e.Reason, tc.wantType, tc.wantActor, tc.wantReason)
			}
			if e.ClientAddr != "127.0.0.1" || e.UserAgent != "admin-test/1.0" {
				t.Errorf("event client %q user agent %q, want 127.0.0.1 and admin-test/1.0", e.ClientAddr, e.UserAgent)
			}
		})
	}

	// No event ever carries a bearer token.
	var all bytes.Buffer
	if err := h.log.Export(context.Background(), audit.Query{}, &all, audit.FormatJSONL, false); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{opsSecret, auditorSecret, remoteSecret, "not-a-configured-token"} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("audit log contains token %q", secret)
		}
	}
}

func TestDeniedEventsNameMethodAndPathWithoutQuerySecrets(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	resp := h.call("GET", "/admin/audit?from=2026-03-02&access_token=hunter2&to=2026-03-02", "", nil)
	if resp.status != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401", resp.status)
	}
	denied := h.eventsOfType(TypeDenied)
	if len(denied) != 1 {
		t.Fatalf("%d admin.denied events, want 1", len(denied))
	}
	if want := "GET /admin/audit?from=2026-03-02&to=2026-03-02"; denied[0].Detail != want {
		t.Errorf("detail = %q, want %q", denied[0].Detail, want)
	}
	if strings.Contains(denied[0].Detail, "hunter2") {
		t.Error("detail leaks an unknown query parameter")
	}
}

func TestForwardedForOnlyFromTrustedProxies(t *testing.T) {
	viewPath := func(h *harness) string { return "/admin/links/" + h.createLink("f.pdf").id }

	t.Run("untrusted peer: spoofed header ignored", func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		resp := h.call("GET", viewPath(h), remoteSecret, map[string]string{"X-Forwarded-For": "192.0.2.7"})
		if resp.status != http.StatusForbidden {
			t.Fatalf("status = %d, want 403 (X-Forwarded-For from an untrusted peer must not count)", resp.status)
		}
		if e := h.lastEvent(); e.Reason != ReasonNetwork || e.ClientAddr != "127.0.0.1" {
			t.Errorf("event reason %q client %q, want network from 127.0.0.1", e.Reason, e.ClientAddr)
		}
	})

	trusted := harnessOptions{trustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	cases := []struct {
		name       string
		secret     string
		xff        string // lines separated by \n
		wantStatus int
		wantClient string
	}{
		{"client behind the proxy", remoteSecret, "192.0.2.7", 200, "192.0.2.7"},
		{"port and spaces", remoteSecret, " 192.0.2.7:50000 ", 200, "192.0.2.7"},
		{"client-written hop left of the real one is ignored", remoteSecret, "192.0.2.7, 198.51.100.1", 403, "198.51.100.1"},
		{"right-most line counts", remoteSecret, "192.0.2.7\n198.51.100.1", 403, "198.51.100.1"},
		{"trusted hops are skipped", remoteSecret, "192.0.2.7, 127.0.0.1", 200, "192.0.2.7"},
		{"no header: the proxy itself", opsSecret, "", 200, "127.0.0.1"},
		{"other network for another token", opsSecret, "10.1.2.3", 200, "10.1.2.3"},
		{"token not allowed there", opsSecret, "192.0.2.7", 403, "192.0.2.7"},
		{"garbage hop: last vouched address", remoteSecret, "192.0.2.7, not-an-ip", 403, "127.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, trusted)
			var header map[string]string
			if tc.xff != "" {
				header = map[string]string{"X-Forwarded-For": tc.xff}
			}
			resp := h.call("GET", viewPath(h), tc.secret, header)
			if resp.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", resp.status, tc.wantStatus, resp.body)
			}
			if e := h.lastEvent(); e.ClientAddr != tc.wantClient {
				t.Errorf("event client_addr = %q, want %q", e.ClientAddr, tc.wantClient)
			}
		})
	}
}

func TestExportStreamsJSONL(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.seedMailEvents()

	resp := h.call("GET", "/admin/audit?from=2026-03-01&to=2026-03-02&format=jsonl&type=mail.received", auditorSecret, nil)
	if resp.status != http.StatusOK {
		t.Fatalf("status = %d; body %s", resp.status, resp.body)
	}
	if ct := resp.header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cd := resp.header.Get("Content-Disposition"); cd != `attachment; filename="audit-2026-03-01-2026-03-02.jsonl"` {
		t.Errorf("Content-Disposition = %q", cd)
	}
	got := parseJSONL(t, resp.body)
	if len(got) != 2 {
		t.Fatalf("got %d events, want the 2 mail.received of 03-01 and 03-02: %s", len(got), resp.body)
	}
	for _, e := range got {
		if e.Type != audit.TypeMailReceived {
			t.Errorf("type filter let %s through", e.Type)
		}
		if !strings.HasSuffix(e.Time, "+09:00") {
			t.Errorf("time %q not in the configured zone", e.Time)
		}
	}

	// Several types, comma-separated and repeated, and a recipient.
	resp = h.call("GET", "/admin/audit?from=2026-03-01&to=2026-03-02&format=jsonl&type=mail.received,file.stored&type=download.ok&recipient=BOB@example.net", opsSecret, nil)
	if got := parseJSONL(t, resp.body); resp.status != 200 || len(got) != 1 || got[0].Sender != "alice@example.com" {
		t.Fatalf("recipient filter: status %d, events %+v", resp.status, got)
	}

	// Without a type filter today's export shows this very call: it is
	// recorded before the first byte goes out.
	resp = h.call("GET", exportToday, opsSecret, nil)
	got = parseJSONL(t, resp.body)
	if len(got) == 0 {
		t.Fatal("empty export")
	}
	last := got[len(got)-1]
	if last.Type != TypeAuditExport || last.Actor != "admin:ops" || last.Detail != "GET /admin/audit?format=jsonl&from=2026-03-02&to=2026-03-02" {
		t.Errorf("last exported event = %+v, want this export call", last)
	}

	// A range in the future is simply empty.
	resp = h.call("GET", "/admin/audit?from=2030-01-01&to=2030-01-31&format=jsonl", opsSecret, nil)
	if resp.status != 200 || len(bytes.TrimSpace(resp.body)) != 0 {
		t.Errorf("future range: status %d body %q", resp.status, resp.body)
	}
}

func TestExportStreamsCSV(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	h.seedMailEvents()

	resp := h.call("GET", "/admin/audit?from=2026-03-01&to=2026-03-01&format=csv&sender=alice@example.com&bom=1", auditorSecret, nil)
	if resp.status != http.StatusOK {
		t.Fatalf("status = %d; body %s", resp.status, resp.body)
	}
	if ct := resp.header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cd := resp.header.Get("Content-Disposition"); cd != `attachment; filename="audit-2026-03-01-2026-03-01.csv"` {
		t.Errorf("Content-Disposition = %q", cd)
	}
	body, hadBOM := bytes.CutPrefix(resp.body, []byte("\xEF\xBB\xBF"))
	if !hadBOM {
		t.Error("bom=1 but no byte order mark")
	}
	records, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("parse CSV: %v", err)
	}
	if len(records) != 3 {
		t.Fatalf("got %d rows, want header + 2 (mail.received, file.stored of alice on 03-01): %q", len(records), records)
	}
	if strings.Join(records[0], ",") != strings.Join(audit.CSVColumns(), ",") {
		t.Errorf("header = %q", records[0])
	}
	if records[1][2] != string(audit.TypeMailReceived) || records[2][2] != string(audit.TypeFileStored) || records[2][14] != "請求書.pdf" {
		t.Errorf("rows = %q", records[1:])
	}
}

func TestExportBadParameters(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	cases := []struct {
		query     string
		wantInErr string
	}{
		{"from=2026-3-1&to=2026-03-02&format=jsonl", "from: want YYYY-MM-DD"},
		{"from=2026-02-30&to=2026-03-02&format=jsonl", "from: want YYYY-MM-DD"},
		{"to=2026-03-02&format=jsonl", "from: missing"},
		{"from=2026-03-02&format=jsonl", "to: missing"},
		{"from=2026-03-02&to=yesterday&format=jsonl", "to: want YYYY-MM-DD"},
		{"from=2026-03-05&to=2026-03-02&format=jsonl", "from: 2026-03-05 is after to 2026-03-02"},
		{"from=2026-03-01&to=2026-03-02", "format: missing"},
		{"from=2026-03-01&to=2026-03-02&format=xlsx", "format: want jsonl or csv"},
		{"from=2026-03-01&to=2026-03-02&format=jsonl&type=mail.recieved", `type: unknown event type "mail.recieved"`},
		{"from=2026-03-01&to=2026-03-02&format=jsonl&bom=1", "bom: applies to format=csv only"},
		{"from=2026-03-01&to=2026-03-02&format=csv&bom=yes", "bom: want 1 or 0"},
		{"from=2026-03-01&from=2026-03-02&to=2026-03-02&format=csv", "from: given 2 times"},
		{"form=2026-03-01&to=2026-03-02&format=csv", `unknown parameter "form"`},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			resp := h.call("GET", "/admin/audit?"+tc.query, opsSecret, nil)
			if resp.status != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400; body %s", resp.status, resp.body)
			}
			if msg := resp.errorText(t); !strings.Contains(msg, tc.wantInErr) {
				t.Errorf("error = %q, want it to contain %q", msg, tc.wantInErr)
			}
			if cd := resp.header.Get("Content-Disposition"); cd != "" {
				t.Errorf("error answer has Content-Disposition %q", cd)
			}
			if e := h.lastEvent(); e.Type != TypeAuditExport || e.Reason != "bad request" || e.Actor != "admin:ops" {
				t.Errorf("last event = %+v, want admin.audit.export with reason bad request", e)
			}
		})
	}
}

func TestRevokeLink(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	link := h.createLink("見積書.pdf")
	other := h.createLink("other.pdf")

	resp := h.call("POST", "/admin/links/"+link.id+"/revoke", opsSecret, nil)
	if resp.status != http.StatusOK {
		t.Fatalf("status = %d; body %s", resp.status, resp.body)
	}
	var result struct {
		LinkID         string `json:"link_id"`
		RevokedAt      string `json:"revoked_at"`
		AlreadyRevoked bool   `json:"already_revoked"`
	}
	if err := json.Unmarshal(resp.body, &result); err != nil {
		t.Fatalf("decode %s: %v", resp.body, err)
	}
	if result.LinkID != link.id || result.RevokedAt != "2026-03-02T10:00:00+09:00" || result.AlreadyRevoked {
		t.Errorf("result = %+v", result)
	}

	view, err := h.store.LinkByID(context.Background(), link.id)
	if err != nil {
		t.Fatal(err)
	}
	if !view.Link.RevokedAt.Equal(testNow) {
		t.Errorf("store RevokedAt = %v, want %v", view.Link.RevokedAt, testNow)
	}
	if _, err := h.store.CountDownload(context.Background(), link.id, testNow); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("download after revoke: %v, want ErrRevoked", err)
	}
	if v, _ := h.store.LinkByID(context.Background(), other.id); !v.Link.RevokedAt.IsZero() {
		t.Error("revoking one link revoked another")
	}

	revokes := h.eventsOfType(TypeLinkRevoke)
	if len(revokes) != 1 {
		t.Fatalf("%d admin.link.revoke events, want 1", len(revokes))
	}
	e := revokes[0]
	if e.Actor != "admin:ops" || e.LinkID != link.id || e.FileID != link.fileID || e.FileName != "見積書.pdf" ||
		e.ClientAddr != "127.0.0.1" || e.Detail != "POST /admin/links/"+link.id+"/revoke" {
		t.Errorf("admin.link.revoke event = %+v", e)
	}
	revoked := h.eventsOfType(audit.TypeLinkRevoked)
	if len(revoked) != 1 || revoked[0].Actor != "admin:ops" || revoked[0].LinkID != link.id || revoked[0].Reason != "admin" {
		t.Errorf("link.revoked events = %+v", revoked)
	}

	// Again: same time, no second link.revoked, but the call is audited.
	resp = h.call("POST", "/admin/links/"+link.id+"/revoke", opsSecret, nil)
	if err := json.Unmarshal(resp.body, &result); err != nil || resp.status != 200 {
		t.Fatalf("second revoke: %d %s", resp.status, resp.body)
	}
	if !result.AlreadyRevoked || result.RevokedAt != "2026-03-02T10:00:00+09:00" {
		t.Errorf("second revoke result = %+v", result)
	}
	if n := len(h.eventsOfType(TypeLinkRevoke)); n != 2 {
		t.Errorf("%d admin.link.revoke events after two calls, want 2", n)
	}
	if n := len(h.eventsOfType(audit.TypeLinkRevoked)); n != 1 {
		t.Errorf("%d link.revoked events after revoking twice, want 1", n)
	}
}

func TestRevokeUnknownLink(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, id := range []string{store.NewID(), "not%20an%20id", strings.Repeat("a", 65)} {
		resp := h.call("POST", "/admin/links/"+id+"/revoke", opsSecret, nil)
		if resp.status != http.StatusNotFound {
			t.Fatalf("%s: status = %d, want 404", id, resp.status)
		}
		if msg := resp.errorText(t); msg != "unknown link" {
			t.Errorf("%s: error = %q", id, msg)
		}
		if e := h.lastEvent(); e.Type != TypeLinkRevoke || e.Reason != "unknown link" || e.Actor != "admin:ops" {
			t.Errorf("%s: last event = %+v", id, e)
		}
	}
}

func TestViewLink(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	link := h.createLink("plan.pdf")

	resp := h.call("GET", "/admin/links/"+link.id, auditorSecret, nil)
	if resp.status != http.StatusOK {
		t.Fatalf("status = %d; body %s", resp.status, resp.body)
	}
	var got map[string]any
	if err := json.Unmarshal(resp.body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"link_id": link.id, "status": "active", "file_id": link.fileID, "file_name": "plan.pdf",
		"content_type": "application/pdf", "size": 12345.0, "sha256": link.sha256,
		"created_at": "2026-03-02T09:00:00+09:00", "expires_at": "2026-03-09T10:00:00+09:00",
		"revoked_at": nil, "downloads": 0.0, "max_downloads": 5.0,
		"message_id": link.messageID, "header_id": "<m-plan.pdf@example.com>",
		"sender": "alice@example.com", "recipients": []any{"bob@example.net", "carol@example.org"},
	}
	for k, v := range want {
		if gv, ok := got[k]; !ok || !equalJSON(gv, v) {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected field %q = %v", k, got[k])
		}
		if strings.Contains(strings.ToLower(k), "token") {
			t.Errorf("link view exposes %q", k)
		}
	}
	views := h.eventsOfType(TypeLinkView)
	if len(views) != 1 || views[0].Actor != "admin:auditor" || views[0].LinkID != link.id || views[0].FileName != "plan.pdf" {
		t.Errorf("admin.link.view events = %+v", views)
	}

	// After revocation the view says so.
	h.call("POST", "/admin/links/"+link.id+"/revoke", opsSecret, nil)
	resp = h.call("GET", "/admin/links/"+link.id, opsSecret, nil)
	got = nil
	if err := json.Unmarshal(resp.body, &got); err != nil {
		t.Fatal(err)
	}
	if got["status"] != "revoked" || got["revoked_at"] != "2026-03-02T10:00:00+09:00" {
		t.Errorf("after revoke: status %v revoked_at %v", got["status"], got["revoked_at"])
	}

	resp = h.call("GET", "/admin/links/"+store.NewID(), opsSecret, nil)
	if resp.status != http.StatusNotFound {
		t.Errorf("unknown link: status %d", resp.status)
	}
}

func equalJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func TestCallFailsWhenItCannotBeAudited(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	link := h.createLink("keep.pdf")
	h.recorder.fail.Store(true)

	for _, tc := range []struct{ method, path, secret string }{
		{"POST", "/admin/links/" + link.id + "/revoke", opsSecret},
		{"GET", exportToday, opsSecret},
		{"GET", "/admin/links/" + link.id, opsSecret},
		{"GET", "/debug/pprof/", opsSecret},
		{"GET", exportToday, ""},           // refused call
		{"GET", exportToday, remoteSecret}, // refused call
	} {
		resp := h.call(tc.method, tc.path, tc.secret, nil)
		if resp.status != http.StatusServiceUnavailable {
			t.Errorf("%s %s: status = %d, want 503", tc.method, tc.path, resp.status)
			continue
		}
		if msg := resp.errorText(t); !strings.Contains(msg, "audit log unavailable") {
			t.Errorf("%s %s: error = %q", tc.method, tc.path, msg)
		}
		if cd := resp.header.Get("Content-Disposition"); cd != "" {
			t.Errorf("%s %s: Content-Disposition %q on a 503", tc.method, tc.path, cd)
		}
	}
	view, err := h.store.LinkByID(context.Background(), link.id)
	if err != nil {
		t.Fatal(err)
	}
	if !view.Link.RevokedAt.IsZero() {
		t.Error("link was revoked although the revocation could not be audited")
	}
	h.recorder.fail.Store(false)
	if n := len(h.events()); n != 0 {
		t.Errorf("%d events recorded while the log was down", n)
	}
}

func TestPprofOnlyForAdmins(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline", "/debug/pprof/heap?gc=1"} {
		resp := h.call("GET", path, opsSecret, nil)
		if resp.status != http.StatusOK || len(resp.body) == 0 {
			t.Errorf("admin %s: status %d, %d bytes", path, resp.status, len(resp.body))
		}
		if e := h.lastEvent(); e.Type != TypePprof || e.Actor != "admin:ops" || e.Detail != "GET "+path {
			t.Errorf("admin %s: last event = %+v", path, e)
		}
	}
	resp := h.call("GET", "/debug/pprof/", opsSecret, nil)
	if !bytes.Contains(resp.body, []byte("goroutine")) {
		t.Errorf("pprof index does not list goroutine: %.200s", resp.body)
	}

	for _, tc := range []struct {
		secret     string
		wantStatus int
		wantReason string
	}{
		{"", 401, ReasonNoToken},
		{auditorSecret, 403, ReasonRole},
		{remoteSecret, 403, ReasonNetwork},
	} {
		resp := h.call("GET", "/debug/pprof/goroutine?debug=2", tc.secret, nil)
		if resp.status != tc.wantStatus {
			t.Errorf("reason %s: status = %d, want %d", tc.wantReason, resp.status, tc.wantStatus)
		}
		if bytes.Contains(resp.body, []byte("goroutine ")) {
			t.Errorf("reason %s: refused call got a goroutine dump", tc.wantReason)
		}
		if e := h.lastEvent(); e.Type != TypeDenied || e.Reason != tc.wantReason {
			t.Errorf("reason %s: last event = %+v", tc.wantReason, e)
		}
	}
}

func TestHealthzNeedsNoTokenAndIsNotAudited(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	resp := h.call("GET", "/healthz", "", nil)
	if resp.status != http.StatusOK || strings.TrimSpace(string(resp.body)) != "ok" {
		t.Fatalf("healthz: %d %q", resp.status, resp.body)
	}
	if n := len(h.events()); n != 0 {
		t.Errorf("healthz left %d audit events", n)
	}
}

func TestNewRejectsBadConfiguration(t *testing.T) {
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "attachgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log, err := audit.NewSQLite(st.DB(), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	good := func() Options {
		return Options{Tokens: testTokens(), Store: st, Audit: log, Export: log}
	}
	emptyHash := sha256.Sum256(nil)
	cases := []struct {
		name    string
		change  func(o *Options)
		wantErr string
	}{
		{"no store", func(o *Options) { o.Store = nil }, "Store is required"},
		{"no audit", func(o *Options) { o.Audit = nil }, "Audit is required"},
		{"no exporter", func(o *Options) { o.Export = nil }, "Export is required"},
		{"short hash", func(o *Options) { o.Tokens[0].SHA256 = o.Tokens[0].SHA256[:16] }, "must be 32 bytes"},
		{"hash of empty token", func(o *Options) { o.Tokens[0].SHA256 = emptyHash[:] }, "empty string"},
		{"bad role", func(o *Options) { o.Tokens[0].Role = "root" }, "role must be"},
		{"duplicate name", func(o *Options) { o.Tokens[1].Name = o.Tokens[0].Name }, "duplicate"},
		{"no name", func(o *Options) { o.Tokens[0].Name = "" }, "name is empty"},
		{"no networks", func(o *Options) { o.Tokens[0].Networks = nil }, "no networks"},
		{"invalid network", func(o *Options) { o.Tokens[0].Networks = []netip.Prefix{{}} }, "not a valid prefix"},
		{"invalid proxy", func(o *Options) { o.TrustedProxies = []netip.Prefix{{}} }, "TrustedProxies[0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := good()
			tc.change(&o)
			_, err := New(o)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New: %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
	if _, err := New(good()); err != nil {
		t.Errorf("New with good options: %v", err)
	}
}

// TestMatchTokenChecksEveryHash pins the constant-time lookup's result:
// each configured token is found, whatever its position.
func TestMatchTokenChecksEveryHash(t *testing.T) {
	o := Options{Tokens: testTokens(), Store: nopStore{}, Audit: nopRecorder{}, Export: nopExporter{}}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	for secret, name := range map[string]string{opsSecret: "ops", auditorSecret: "auditor", remoteSecret: "remote"} {
		if tok := s.matchToken(secret); tok == nil || tok.Name != name {
			t.Errorf("matchToken(%s…) = %v, want %s", secret[:6], tok, name)
		}
	}
	for _, secret := range []string{"", "ops", opsSecret + " "} {
		if tok := s.matchToken(secret); tok != nil {
			t.Errorf("matchToken(%q) = %s, want none", secret, tok.Name)
		}
	}
}

type nopStore struct{ store.Store }
type nopRecorder struct{}
type nopExporter struct{}

func (nopRecorder) Record(context.Context, audit.Event) error { return nil }
func (nopExporter) Export(context.Context, audit.Query, io.Writer, string, bool) error {
	return nil
}

// brokenExporter writes n bytes of the real export's shape, then fails.
type brokenExporter struct{ n int }

var errExportBroken = errors.New("disk read error (test)")

func (b brokenExporter) Export(_ context.Context, _ audit.Query, w io.Writer, _ string, _ bool) error {
	if b.n > 0 {
		line := []byte(`{"seq":1,"time":"2026-03-02T10:00:00+09:00","type":"mail.received","hash":"x"}` + "\n")
		for written := 0; written < b.n; written += len(line) {
			if _, err := w.Write(line); err != nil {
				return err
			}
		}
	}
	return errExportBroken
}

func TestExportFailure(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	newServer := func(exp AuditExporter) string {
		srv, err := New(Options{Tokens: testTokens(), Store: h.store, Audit: h.log, Export: exp,
			Location: testZone, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		return ts.URL
	}
	get := func(base string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", base+exportToday, nil)
		req.Header.Set("Authorization", "Bearer "+opsSecret)
		return http.DefaultClient.Do(req)
	}

	// Nothing sent yet: a proper 503.
	resp, err := get(newServer(brokenExporter{}))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Content-Disposition") != "" {
		t.Errorf("early failure: %d, Content-Disposition %q, body %s", resp.StatusCode, resp.Header.Get("Content-Disposition"), body)
	}

	// Mid-stream: the status line is gone, so the connection is cut and
	// the client sees a truncated body, never a clean end.
	resp, err = get(newServer(brokenExporter{n: 256 << 10}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err == nil {
		t.Errorf("mid-stream failure: status %d, read error %v; want 200 and a read error", resp.StatusCode, err)
	}
	if n := len(h.eventsOfType(TypeAuditExport)); n != 2 {
		t.Errorf("%d admin.audit.export events, want 2 (each call recorded before streaming)", n)
	}
}
