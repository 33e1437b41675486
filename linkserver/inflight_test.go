package linkserver

import (
	"crypto/sha256"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/attachgate/attachgate/admin"
	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
)

// startAdmin serves the real admin API over h's store and audit log, with
// h's link server as its count of downloads in flight, as the daemon
// wires them. It returns the API's URL and an admin token.
func startAdmin(t *testing.T, h *harness) (url, secret string) {
	t.Helper()
	// The export route is not used here; it needs an audit log of its own.
	exportDB, err := store.OpenSQLite(filepath.Join(t.TempDir(), "export.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exportDB.Close() })
	export, err := audit.NewSQLite(exportDB.DB(), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	secret = "in-flight-test-admin-token"
	sum := sha256.Sum256([]byte(secret))
	api, err := admin.New(admin.Options{
		Tokens: []admin.Token{{Name: "ops", SHA256: sum[:], Role: admin.RoleAdmin,
			Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}},
		Store:    h.store,
		Audit:    h.events,
		Export:   export,
		InFlight: h.server,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:      h.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(api.Handler())
	t.Cleanup(ts.Close)
	return ts.URL, secret
}

func adminRevoke(t *testing.T, url, secret, linkID string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/admin/links/"+linkID+"/revoke", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mustStatus(t, resp, http.StatusOK)
}

func revokedDetail(t *testing.T, h *harness, linkID string) string {
	t.Helper()
	for _, e := range h.events.ofType(audit.TypeLinkRevoked) {
		if e.LinkID == linkID {
			return e.Detail
		}
	}
	t.Fatalf("no link.revoked for %s", linkID)
	return ""
}

// Issue 15 part 3: the link.revoked event of an admin revoke says how many
// downloads of the link this instance was serving when it was revoked, so
// the audit log tells how many download.ok events the revoke raced with.
// Downloads of other links, and finished ones, do not count.
func TestRevokeEventCountsDownloadsInFlight(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.SignedURLTTL = time.Hour })
	apiURL, secret := startAdmin(t, h)
	const size = 32 << 20
	big := h.addLink(linkSpec{name: "big.bin", content: testContent(size)})
	other := h.addLink(linkSpec{name: "other.bin", content: testContent(size)})
	idle := h.addLink(linkSpec{name: "idle.txt", content: []byte("nobody downloads this")})

	// Two downloads of big and one of other, each past its first bytes.
	var bodies []io.ReadCloser
	for _, l := range []testLink{big, big, other} {
		resp, err := http.Get(h.http.URL + h.signedURL(l.token))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		mustStatus(t, resp, http.StatusOK)
		if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, resp.Body)
	}
	if n := h.server.DownloadsInFlight(big.id); n != 2 {
		t.Fatalf("DownloadsInFlight(big) = %d while two download, want 2", n)
	}

	adminRevoke(t, apiURL, secret, big.id)
	if got, want := revokedDetail(t, h, big.id), "downloads in flight on this instance: 2"; got != want {
		t.Errorf("link.revoked of the link being downloaded twice: detail %q, want %q", got, want)
	}
	adminRevoke(t, apiURL, secret, idle.id)
	if got, want := revokedDetail(t, h, idle.id), "downloads in flight on this instance: 0"; got != want {
		t.Errorf("link.revoked of a link nobody downloads: detail %q, want %q", got, want)
	}

	// Ended downloads leave the count, whether cut by the revoke or
	// abandoned by the client.
	for _, b := range bodies {
		b.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for h.server.DownloadsInFlight(big.id)+h.server.DownloadsInFlight(other.id) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("in flight after every client hung up: big %d, other %d",
				h.server.DownloadsInFlight(big.id), h.server.DownloadsInFlight(other.id))
		}
		time.Sleep(20 * time.Millisecond)
	}
	adminRevoke(t, apiURL, secret, other.id)
	if got, want := revokedDetail(t, h, other.id), "downloads in flight on this instance: 0"; got != want {
		t.Errorf("link.revoked after its download ended: detail %q, want %q", got, want)
	}
}
