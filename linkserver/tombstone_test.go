package linkserver

import (
	"context"
	"html"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/expiry"
)

// After the janitor purges an expired file, its link used to answer
// "404 Link not found ... check that you copied the whole link". Now a
// tombstone says when it expired or was withdrawn and what to do, in
// English and Japanese, on both store backends.
func TestPurgedLinksSayWhatHappened(t *testing.T) {
	for _, backend := range []string{backendSQLite, backendRedis} {
		t.Run(backend, func(t *testing.T) {
			h := newHarnessOn(t, backend)
			// The janitor runs on the wall clock (Redis expires tombstones
			// by it), so the links are made to expire in the past.
			now := time.Now().UTC().Truncate(time.Second)
			h.clock.Set(now.Add(-3 * time.Hour))
			expired := h.addLink(linkSpec{name: "expired.pdf", content: []byte("old"), expiresIn: time.Hour})
			revoked := h.addLink(linkSpec{name: "revoked.pdf", content: []byte("withdrawn"), expiresIn: 2 * time.Hour})
			live := h.addLink(linkSpec{name: "live.pdf", content: []byte("live"), expiresIn: 6 * time.Hour})
			revokedAt := now.Add(-150 * time.Minute)
			if err := h.store.RevokeLink(context.Background(), revoked.id, revokedAt); err != nil {
				t.Fatal(err)
			}
			h.clock.Set(now)

			j := &expiry.Janitor{Store: h.store, Blobs: h.blobs, Audit: h.events,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), TombstoneTTL: 90 * 24 * time.Hour}
			n, err := j.Sweep(context.Background())
			if err != nil || n != 2 {
				t.Fatalf("janitor Sweep = %d, %v; want the 2 past files purged", n, err)
			}
			if _, err := h.store.LinkByID(context.Background(), expired.id); err == nil {
				t.Fatal("the expired link is still in the store after the sweep")
			}

			expiredAt := now.Add(-2 * time.Hour).In(testZone)
			tests := []struct {
				name, token, lang string
				want              []string
			}{
				{"expired, English", expired.token, "en", []string{
					"This link expired on " + english.formatTime(expiredAt) + ".",
					"ask the sender to send it again"}},
				{"expired, Japanese", expired.token, "ja", []string{
					"このリンクは " + japanese.formatTime(expiredAt) + " に有効期限が切れました。",
					"送信者に再送を依頼してください"}},
				{"revoked, English", revoked.token, "en", []string{
					"The sender withdrew this link on " + english.formatTime(revokedAt.In(testZone)),
					"If you still need the file, ask the sender."}},
				{"revoked, Japanese", revoked.token, "ja", []string{
					"このリンクは " + japanese.formatTime(revokedAt.In(testZone)) + " に送信者によって取り消された",
					"送信者にお問い合わせください"}},
			}
			for _, tt := range tests {
				for _, method := range []string{http.MethodGet, http.MethodPost} {
					resp, body := h.do(http.DefaultClient, method, "/d/"+tt.token,
						http.Header{"Accept-Language": {tt.lang}, "Content-Type": {"application/x-www-form-urlencoded"}},
						strings.NewReader("csrf=x"))
					mustStatus(t, resp, http.StatusGone)
					page := html.UnescapeString(string(body))
					for _, want := range tt.want {
						if !strings.Contains(page, want) {
							t.Errorf("%s %s: page lacks %q:\n%s", tt.name, method, want, page)
						}
					}
				}
			}
			denied := h.events.ofType(audit.TypeDownloadDenied)
			reasons := map[string]int{}
			for _, e := range denied {
				reasons[e.Reason]++
			}
			if reasons["expired"] != 2 || reasons["revoked"] != 2 {
				t.Errorf("denials after purge by reason %v, want 2 expired and 2 revoked", reasons)
			}
			// A live link and an invented token are unaffected.
			resp, _ := h.do(http.DefaultClient, http.MethodGet, "/d/"+live.token, nil, nil)
			mustStatus(t, resp, http.StatusOK)
			resp, _ = h.do(http.DefaultClient, http.MethodGet, "/d/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", nil, nil)
			mustStatus(t, resp, http.StatusNotFound)

			// Past the retention the tombstone is gone (Redis expires it
			// itself; SQLite's is purged by the janitor).
			h.clock.Set(now.Add(91 * 24 * time.Hour))
			j.Now = h.clock.Now
			if _, err := j.Sweep(context.Background()); err != nil {
				t.Fatal(err)
			}
			if backend == backendSQLite {
				resp, _ = h.do(http.DefaultClient, http.MethodGet, "/d/"+expired.token, nil, nil)
				mustStatus(t, resp, http.StatusNotFound)
			}
		})
	}
}
