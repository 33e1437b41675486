package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/store"
)

// storeLink stores a message from sender to rcpts, created at created, with
// one file and its link, and returns the link ID.
func (h *harness) storeLink(sender string, rcpts []string, created time.Time) string {
	h.t.Helper()
	_, hash, err := store.NewToken()
	if err != nil {
		h.t.Fatal(err)
	}
	msg := store.Message{ID: store.NewID(), MessageID: "<x@example.com>", Sender: sender, Recipients: rcpts,
		ClientAddr: "127.0.0.1", CreatedAt: created}
	file := store.File{ID: store.NewID(), MessageID: msg.ID, Name: "f.pdf", ContentType: "application/pdf",
		Size: 1, SHA256: strings.Repeat("ab", 32), KeyID: "k1", CreatedAt: created, ExpiresAt: created.Add(48 * time.Hour)}
	link := store.Link{ID: store.NewID(), FileID: file.ID, TokenHash: hash, CreatedAt: created, ExpiresAt: created.Add(48 * time.Hour)}
	if err := h.store.CreateMessage(context.Background(), msg, []store.File{file}, []store.Link{link}); err != nil {
		h.t.Fatal(err)
	}
	return link.ID
}

func listedIDs(t *testing.T, r response) []string {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var infos []linkInfo
	if err := json.Unmarshal(r.body, &infos); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	ids := []string{}
	for _, i := range infos {
		ids = append(ids, i.LinkID)
	}
	return ids
}

// TestLinkList: GET /admin/links filters by sender, recipient, local
// dates and state, pages with limit/after, is audited, and refuses a bad
// parameter with 400 naming it (audited as well).
func TestLinkList(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	day1 := time.Date(2026, 3, 1, 0, 30, 0, 0, testZone) // 2026-02-28 in UTC: dates are local
	day2 := time.Date(2026, 3, 2, 9, 0, 0, 0, testZone)
	a := h.storeLink("alice@example.com", []string{"bob@example.net"}, day1)
	b := h.storeLink("Carol@Example.com", []string{"dave@example.org", "bob@example.net"}, day2)
	c := h.storeLink("alice@example.com", []string{"erin@example.org"}, day2)
	if r := h.call("POST", "/admin/links/"+c+"/revoke", opsSecret, nil); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}

	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{a, b, c}},
		{"?sender=alice@example.com", []string{a, c}},
		{"?sender=carol@EXAMPLE.com", []string{b}},
		{"?recipient=bob@example.net", []string{a, b}},
		{"?from=2026-03-01&to=2026-03-01", []string{a}},
		{"?from=2026-03-02", []string{b, c}},
		{"?to=2026-02-28", nil},
		{"?state=revoked", []string{c}},
		{"?state=active&sender=alice@example.com", []string{a}},
		{"?state=expired", nil},
	}
	for _, tt := range tests {
		got := listedIDs(t, h.call("GET", "/admin/links"+tt.query, auditorSecret, nil))
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("GET /admin/links%s = %v, want %v", tt.query, got, tt.want)
		}
	}
	if n := len(h.eventsOfType(TypeLinkList)); n != len(tests) {
		t.Errorf("%d admin.link.list events, want %d", n, len(tests))
	}

	// Paging: a full page names the next one.
	r := h.call("GET", "/admin/links?limit=2&sender=", auditorSecret, nil)
	if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(t), "sender") {
		t.Errorf("empty sender: %d %s", r.status, r.body)
	}
	r = h.call("GET", "/admin/links?limit=2", auditorSecret, nil)
	if got := listedIDs(t, r); strings.Join(got, ",") != a+","+b || r.header.Get(NextCursorHeader) != b {
		t.Fatalf("first page %v, cursor %q", got, r.header.Get(NextCursorHeader))
	}
	next := r.header.Get("Link")
	if !strings.Contains(next, "after="+b) || !strings.Contains(next, `rel="next"`) {
		t.Fatalf("Link header %q", next)
	}
	r = h.call("GET", "/admin/links?limit=2&after="+b, auditorSecret, nil)
	if got := listedIDs(t, r); strings.Join(got, ",") != c || r.header.Get(NextCursorHeader) != "" {
		t.Fatalf("second page %v, cursor %q", got, r.header.Get(NextCursorHeader))
	}
	if strings.Contains(string(r.body), "token") {
		t.Errorf("the listing mentions a token: %s", r.body)
	}

	before := len(h.eventsOfType(TypeLinkList))
	for query, param := range map[string]string{
		"?state=gone":                            "state",
		"?from=2026-13-01":                       "from",
		"?to=yesterday":                          "to",
		"?from=2026-03-02&to=2026-03-01":         "from",
		"?limit=0":                               "limit",
		"?limit=1001":                            "limit",
		"?after=../x":                            "after",
		"?sender=a@b&sender=c@d":                 "sender",
		"?colour=red":                            `unknown parameter "colour"`,
		"?recipient=" + strings.Repeat("x", 400): "recipient",
	} {
		r := h.call("GET", "/admin/links"+query, auditorSecret, nil)
		if r.status != http.StatusBadRequest || !strings.HasPrefix(r.errorText(t), param) && !strings.Contains(r.errorText(t), param) {
			t.Errorf("GET /admin/links%s = %d %s, want 400 naming %s", query, r.status, r.body, param)
		}
	}
	events := h.eventsOfType(TypeLinkList)
	if len(events)-before != 10 {
		t.Fatalf("%d refused listings audited, want 10", len(events)-before)
	}
	if e := events[len(events)-1]; e.Reason != "bad request" || e.Actor != "admin:auditor" {
		t.Errorf("refused listing audited as %+v", e)
	}
	if r := h.call("GET", "/admin/links", "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("without a token: %d", r.status)
	}
	if r := h.call("POST", "/admin/links", opsSecret, nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /admin/links: %d", r.status)
	}
}
