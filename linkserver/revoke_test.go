package linkserver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attachgate/attachgate/audit"
)

// revokeAsAdmin revokes a link the way the admin API does: the store
// first, then link.revoked on the audit log.
func revokeAsAdmin(t *testing.T, h *harness, linkID string) {
	t.Helper()
	if err := h.store.RevokeLink(context.Background(), linkID, h.clock.Now()); err != nil {
		t.Error(err)
		return
	}
	if err := h.events.Record(context.Background(), audit.Event{Type: audit.TypeLinkRevoked, LinkID: linkID, Actor: "admin:test"}); err != nil {
		t.Error(err)
	}
}

// eventIndex returns the position of the first event matching f, or -1.
func eventIndex(events []audit.Event, from int, f func(audit.Event) bool) int {
	for i := from; i < len(events); i++ {
		if f(events[i]) {
			return i
		}
	}
	return -1
}

// Downloads in flight used to finish after a revoke returned, and their
// download.ok landed after link.revoked. Now download.ok is recorded
// before the last revocation check, so a download that sends anything is
// on record before link.revoked; one still streaming is cut within about
// a second and records download.denied (revoked) with what it had sent.
func TestRevokeCutsDownloadsInFlight(t *testing.T) {
	for _, backend := range []string{backendSQLite, backendRedis} {
		t.Run(backend, func(t *testing.T) {
			const size = 32 << 20
			h := newHarnessOn(t, backend, func(o *Options) { o.SignedURLTTL = time.Hour })
			l := h.addLink(linkSpec{name: "big.bin", content: testContent(size)})
			loc := h.signedURL(l.token)

			req, _ := http.NewRequest(http.MethodGet, h.http.URL+loc, nil)
			req.Header.Set("User-Agent", "in-flight")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			mustStatus(t, resp, http.StatusOK)
			buf := make([]byte, 64<<10)
			got, err := io.ReadFull(resp.Body, buf)
			if err != nil {
				t.Fatal(err)
			}
			revokeAsAdmin(t, h, l.id)
			var readErr error
			for readErr == nil {
				var n int
				n, readErr = resp.Body.Read(buf)
				got += n
				time.Sleep(50 * time.Millisecond) // a slow client: 32 MiB would take 25 s
			}
			if got >= size {
				t.Fatalf("the download in flight ran to the end (%d bytes) after the revoke", got)
			}

			events := h.events.all()
			ok := eventIndex(events, 0, func(e audit.Event) bool { return e.Type == audit.TypeDownloadOK && e.UserAgent == "in-flight" })
			revoked := eventIndex(events, 0, func(e audit.Event) bool { return e.Type == audit.TypeLinkRevoked })
			cut := eventIndex(events, 0, func(e audit.Event) bool {
				return e.Type == audit.TypeDownloadDenied && e.UserAgent == "in-flight" && e.Reason == "revoked" &&
					strings.HasPrefix(e.Detail, "revoked during the download; cut after ")
			})
			if ok < 0 || revoked < 0 || cut < 0 || !(ok < revoked && revoked < cut) {
				t.Fatalf("audit order: download.ok at %d, link.revoked at %d, download.denied (cut) at %d; want them in that order", ok, revoked, cut)
			}
		})
	}
}

// Many downloads start while the link is revoked: every one that got the
// file has its download.ok before link.revoked, and every download.ok
// after it is followed by that request's download.denied with nothing
// sent.
func TestRevokeRacingDownloadStarts(t *testing.T) {
	for _, backend := range []string{backendSQLite, backendRedis} {
		t.Run(backend, func(t *testing.T) {
			h := newHarnessOn(t, backend, func(o *Options) { o.SignedURLTTL = time.Hour })
			content := testContent(64 << 10)
			l := h.addLink(linkSpec{name: "f.bin", content: content})
			loc := h.signedURL(l.token)

			const downloads = 24
			status := make([]int, downloads)
			full := make([]bool, downloads)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range downloads {
				wg.Go(func() {
					<-start
					req, _ := http.NewRequest(http.MethodGet, h.http.URL+loc, nil)
					req.Header.Set("User-Agent", fmt.Sprintf("dl-%d", i))
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					defer resp.Body.Close()
					body, _ := io.ReadAll(resp.Body)
					status[i], full[i] = resp.StatusCode, len(body) == len(content)
				})
			}
			wg.Go(func() {
				<-start
				revokeAsAdmin(t, h, l.id)
			})
			close(start)
			wg.Wait()

			events := h.events.all()
			revoked := eventIndex(events, 0, func(e audit.Event) bool { return e.Type == audit.TypeLinkRevoked })
			if revoked < 0 {
				t.Fatal("no link.revoked")
			}
			for i := range downloads {
				ua := fmt.Sprintf("dl-%d", i)
				ok := eventIndex(events, 0, func(e audit.Event) bool { return e.Type == audit.TypeDownloadOK && e.UserAgent == ua })
				switch {
				case status[i] == http.StatusOK:
					if !full[i] || ok < 0 || ok > revoked {
						t.Errorf("%s got the file (whole: %v) with download.ok at %d, link.revoked at %d", ua, full[i], ok, revoked)
					}
				case status[i] == http.StatusGone && ok >= 0:
					denied := eventIndex(events, ok, func(e audit.Event) bool {
						return e.Type == audit.TypeDownloadDenied && e.UserAgent == ua && e.Reason == "revoked"
					})
					if denied < 0 {
						t.Errorf("%s: download.ok at %d but refused, and no download.denied after it", ua, ok)
					}
				case status[i] == http.StatusGone:
				default:
					t.Errorf("%s: status %d", ua, status[i])
				}
			}
		})
	}
}
