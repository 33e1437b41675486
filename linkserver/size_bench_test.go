package linkserver

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// discardResponse is a ResponseWriter that throws the body away, so the
// handler is measured without an HTTP client or a socket.
type discardResponse struct {
	header http.Header
	status int
	n      int64
}

func (d *discardResponse) Header() http.Header { return d.header }
func (d *discardResponse) WriteHeader(code int) {
	if d.status == 0 {
		d.status = code
	}
}
func (d *discardResponse) Write(p []byte) (int, error) {
	if d.status == 0 {
		d.status = http.StatusOK
	}
	d.n += int64(len(p))
	return len(p), nil
}

var downloadSizes = []int{1 << 20, 10 << 20}

// serveFile runs the download handler once for path and checks the result.
func serveFile(tb testing.TB, h http.Handler, path string, size int) {
	w := &discardResponse{header: http.Header{}}
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	if w.status != http.StatusOK || w.n != int64(size) {
		tb.Fatalf("download: status %d, %d bytes, want 200 and %d", w.status, w.n, size)
	}
}

// BenchmarkDownloadHandlerSizes runs the signed-URL handler (store lookup,
// blob open, decrypt, http.ServeContent, audit) for 1 MiB and 10 MiB files
// without a network in between: MB/s of the handler alone, allocs/op.
func BenchmarkDownloadHandlerSizes(b *testing.B) {
	for _, size := range downloadSizes {
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			h := newHarness(b, func(o *Options) { o.SignedURLTTL = time.Hour })
			h.events.keep = false
			l := h.addLink(linkSpec{name: "big.bin", content: testContent(size)})
			path := h.signedURL(l.token)
			handler := h.server.Handler()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				serveFile(b, handler, path, size)
			}
		})
	}
}

// BenchmarkLandingHandler is the landing page without the network.
func BenchmarkLandingHandler(b *testing.B) {
	h := newHarness(b)
	h.events.keep = false
	l := h.addLink(linkSpec{name: "見積書 2026.pdf", content: testContent(4096)})
	handler := h.server.Handler()
	b.ReportAllocs()
	for b.Loop() {
		w := &discardResponse{header: http.Header{}}
		handler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/d/"+l.token, nil))
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}

// TestDownloadAllocsBounded checks by allocation count (not time) that a
// download's allocations stay within a fixed number per 64 KiB chunk
// plus a constant: nothing is buffered whole. Today each chunk costs about
// three allocations inside age's DecryptReaderAt.ReadAt (a fresh 64 KiB
// buffer per call; garbage at once, so RSS stays flat); the bound keeps
// that from getting worse, and BENCH.md describes the fix.
func TestDownloadAllocsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 11 MiB")
	}
	h := newHarness(t, func(o *Options) { o.SignedURLTTL = time.Hour })
	h.events.keep = false
	handler := h.server.Handler()
	allocs := map[int]float64{}
	for _, size := range downloadSizes {
		l := h.addLink(linkSpec{name: "big.bin", content: testContent(size)})
		path := h.signedURL(l.token)
		allocs[size] = testing.AllocsPerRun(3, func() { serveFile(t, handler, path, size) })
	}
	small, big := allocs[downloadSizes[0]], allocs[downloadSizes[1]]
	perChunk := (big - small) / float64((downloadSizes[1]-downloadSizes[0])/(64<<10))
	t.Logf("download allocs: %.0f for 1 MiB, %.0f for 10 MiB (%.2f per extra 64 KiB chunk)", small, big, perChunk)
	if perChunk > 4 {
		t.Errorf("download allocations grow by %.1f per 64 KiB chunk (1 MiB: %.0f, 10 MiB: %.0f), want at most 4", perChunk, small, big)
	}
}
