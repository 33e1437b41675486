package linkserver

import (
	"io"
	"net/http"
	"testing"
	"time"
)

func BenchmarkLandingPage(b *testing.B) {
	h := newHarness(b)
	h.events.keep = false
	l := h.addLink(linkSpec{name: "見積書 2026.pdf", content: testContent(4096)})
	client := &http.Client{}
	url := h.http.URL + "/d/" + l.token
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

func BenchmarkDownload10MiB(b *testing.B) {
	const size = 10 << 20
	h := newHarness(b, func(o *Options) { o.SignedURLTTL = time.Hour })
	h.events.keep = false
	l := h.addLink(linkSpec{name: "big.bin", content: testContent(size)})
	url := h.http.URL + h.signedURL(l.token)
	client := &http.Client{}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size || resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d, %d bytes, err %v", resp.StatusCode, n, err)
		}
	}
}
