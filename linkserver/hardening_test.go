package linkserver

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/attachgate/attachgate/audit"
)

// rawRequest opens a TCP connection to the harness.
func (h *harness) dial() net.Conn {
	h.t.Helper()
	c, err := net.Dial("tcp", h.http.Listener.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// waitClosed waits (generously) for the server to close the connection
// c is the client end of.
func (h *harness) waitClosed(c net.Conn) {
	h.t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case addr := <-h.closed:
			if addr == c.LocalAddr().String() {
				return
			}
		case <-deadline:
			h.t.Fatal("the server kept the connection open")
		}
	}
}

// A POST announcing 100,000 bytes and sending one byte at a time used to
// keep its connection (and a file descriptor) forever: only the header
// had a timeout. Now the whole request must arrive within ReadTimeout.
func TestSlowBodyIsCut(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.ReadTimeout = time.Second })
	l := h.addLink(linkSpec{name: "f.txt", content: []byte("x")})
	c := h.dial()
	fmt.Fprintf(c, "POST /d/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\ncsrf=", l.token)
	// Keep dripping until the server hangs up (or the generous deadline).
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 600 {
			if _, err := c.Write([]byte("a")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	h.waitClosed(c)
	<-done
	if n := h.downloads(l.id); n != 0 {
		t.Errorf("downloads = %d after a cut request", n)
	}
}

// An idle keep-alive connection is closed after IdleTimeout.
func TestIdleConnectionIsClosed(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.ReadTimeout = time.Second; o.IdleTimeout = time.Second })
	c := h.dial()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mustStatus(t, resp, http.StatusOK)
	h.waitClosed(c)
}

// Headers are capped: 64 KiB of them get 431, not a parsed request.
func TestHeaderCap(t *testing.T) {
	h := newHarness(t)
	req, _ := http.NewRequest(http.MethodGet, h.http.URL+"/healthz", nil)
	req.Header.Set("X-Padding", strings.Repeat("a", 64<<10))
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mustStatus(t, resp, http.StatusRequestHeaderFieldsTooLarge)
}

// Every body is capped: a form of 1 MiB is refused after maxFormBytes,
// never read whole.
func TestBodyCap(t *testing.T) {
	h := newHarness(t)
	l := h.addLink(linkSpec{name: "f.txt", content: []byte("x")})
	c := h.browser(false)
	_, csrf := h.landing(c, l.token)
	form := url.Values{csrfField: {csrf}, "pad": {strings.Repeat("a", 1<<20)}}
	resp, _ := h.do(c, http.MethodPost, "/d/"+l.token,
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, strings.NewReader(form.Encode()))
	mustStatus(t, resp, http.StatusForbidden)
	if n := h.downloads(l.id); n != 0 {
		t.Errorf("downloads = %d after an oversized form", n)
	}
}

// A download runs as long as the client keeps reading, far past the read
// and page write timeouts; a client that stops reading is cut after
// StallTimeout.
func TestLongDownloadIsNotCutButStalledOneIs(t *testing.T) {
	const size = 24 << 20
	content := testContent(size)

	t.Run("slow reader gets every byte", func(t *testing.T) {
		// Pages must be written within ReadTimeout (500 ms here); the
		// download takes several times that. The stall limit is generous,
		// for a loaded test machine.
		h := newHarness(t, func(o *Options) {
			o.ReadTimeout = 500 * time.Millisecond
			o.StallTimeout = 30 * time.Second
			o.SignedURLTTL = time.Hour
		})
		l := h.addLink(linkSpec{name: "big.bin", content: content})
		loc := h.signedURL(l.token)
		resp, err := http.Get(h.http.URL + loc)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		mustStatus(t, resp, http.StatusOK)
		var got bytes.Buffer
		buf := make([]byte, 1<<20)
		start := time.Now()
		for {
			n, err := resp.Body.Read(buf)
			got.Write(buf[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("download cut after %d bytes and %s: %v", got.Len(), time.Since(start), err)
			}
			time.Sleep(60 * time.Millisecond) // ~1.5 s in all: 3× ReadTimeout
		}
		if !bytes.Equal(got.Bytes(), content) {
			t.Fatalf("got %d bytes, want the %d of the file", got.Len(), size)
		}
	})

	t.Run("stalled reader is cut", func(t *testing.T) {
		h := newHarness(t, func(o *Options) {
			o.StallTimeout = time.Second
			o.SignedURLTTL = time.Hour
		})
		l := h.addLink(linkSpec{name: "big.bin", content: content})
		loc := h.signedURL(l.token)
		c := h.dial()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", loc)
		// Read nothing: the socket buffers fill and the server's write
		// blocks until StallTimeout cuts it.
		h.waitClosed(c)
		n, _ := io.Copy(io.Discard, c)
		if n >= size {
			t.Fatalf("stalled client still received the whole file (%d bytes)", n)
		}
	})
}

// rangeRequest GETs the signed URL with a Range header.
func rangeRequest(t *testing.T, h *harness, loc, rng string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.http.URL+loc, nil)
	req.Header.Set("Range", rng)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// One request with thousands of one-byte ranges used to return a
// multipart answer many times the size of the file.
func TestRangeAmplification(t *testing.T) {
	const size = 1 << 20
	h := newHarness(t, func(o *Options) { o.SignedURLTTL = time.Hour })
	content := testContent(size)
	l := h.addLink(linkSpec{name: "f.bin", content: content})
	loc := h.signedURL(l.token)

	ranges := func(n, step int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("%d-%d", i*step, i*step)
		}
		return "bytes=" + strings.Join(parts, ",")
	}

	t.Run("75,000 ranges", func(t *testing.T) {
		resp, body := rangeRequest(t, h, loc, ranges(75000, 2))
		if len(body) > size {
			t.Fatalf("status %d with %d bytes for a %d-byte file", resp.StatusCode, len(body), size)
		}
	})
	t.Run("1,000 ranges within the header cap", func(t *testing.T) {
		resp, body := rangeRequest(t, h, loc, ranges(1000, 2))
		mustStatus(t, resp, http.StatusOK)
		if !bytes.Equal(body, content) {
			t.Fatalf("%d bytes, want the whole file once", len(body))
		}
	})
	t.Run("overlapping ranges", func(t *testing.T) {
		resp, body := rangeRequest(t, h, loc, "bytes=0-99,50-149")
		mustStatus(t, resp, http.StatusOK)
		if !bytes.Equal(body, content) {
			t.Fatalf("%d bytes, want the whole file once", len(body))
		}
	})
	t.Run("a Range that does not parse is ignored", func(t *testing.T) {
		// Found by FuzzDownloadRequest: ServeContent answered a plain-text
		// 416 under Content-Disposition: attachment.
		for _, rng := range []string{"0", "bytes=5-1", "items=0-1"} {
			resp, body := rangeRequest(t, h, loc, rng)
			mustStatus(t, resp, http.StatusOK)
			if !bytes.Equal(body, content) {
				t.Fatalf("Range %q: %d bytes, want the whole file", rng, len(body))
			}
		}
	})
	t.Run("a few disjoint ranges still work", func(t *testing.T) {
		resp, body := rangeRequest(t, h, loc, "bytes=0-9,100-109,-10")
		mustStatus(t, resp, http.StatusPartialContent)
		for _, want := range [][]byte{content[0:10], content[100:110], content[size-10:]} {
			if !bytes.Contains(body, want) {
				t.Errorf("multipart answer lacks a requested range")
			}
		}
	})
}

func TestRangesAcceptable(t *testing.T) {
	tests := []struct {
		header string
		want   bool
	}{
		{"bytes=0-99", true},
		{"bytes=-10", true},
		{"bytes=100-", true},
		{"bytes=0-9,10-19", true}, // adjacent, not overlapping
		{"bytes=0-9,9-19", false},
		{"bytes=50-, 0-60", false},
		{"bytes=-600,500-509", false}, // the suffix covers 400-999
		{"bytes=2000-3000,0-9", true},
		{"bytes=" + strings.Repeat("0-0,", maxRanges) + "0-0", false},
		{"bytes=garbage", false}, // ignored: the whole file
		{"items=0-1", false},
		{"0", false},
		{"bytes=5-1", false},
		{"bytes=5000-", true}, // unsatisfiable: ServeContent's 416
		{"bytes=", true},
	}
	for _, tt := range tests {
		if got := rangesAcceptable(tt.header, 1000); got != tt.want {
			t.Errorf("rangesAcceptable(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

// POSTs to invented tokens used to write one download.denied each; now a
// client's denials beyond the burst are aggregated into one event per
// reason, and beyond the limit it gets 429, while other clients are not
// affected.
func TestDenialFloodIsAggregated(t *testing.T) {
	trusted := func(o *Options) {
		o.TrustedProxies = mustPrefixes("127.0.0.1/32")
		o.DenialBurst, o.DenialLimit = 5, 20
		o.DenialWindow = time.Hour // flushed by Close
	}
	h := newHarness(t, trusted)
	const attempts = 100
	statuses := map[int]int{}
	for i := range attempts {
		token := fmt.Sprintf("invented%035d", i)
		resp, _ := h.do(http.DefaultClient, http.MethodPost, "/d/"+token,
			http.Header{"X-Forwarded-For": {"203.0.113.66"}, "Content-Type": {"application/x-www-form-urlencoded"}},
			strings.NewReader("csrf=x"))
		statuses[resp.StatusCode]++
	}
	if statuses[http.StatusNotFound] != 20 || statuses[http.StatusTooManyRequests] != attempts-20 {
		t.Errorf("statuses %v, want 20 × 404 then 429", statuses)
	}
	if n := len(h.events.ofType(audit.TypeDownloadDenied)); n != 5 {
		t.Fatalf("%d download.denied events during the flood, want the burst of 5", n)
	}
	// Another client is served normally.
	l := h.addLink(linkSpec{name: "f.txt", content: []byte("x")})
	c := h.browser(false)
	resp, body := h.do(c, http.MethodGet, "/d/"+l.token, http.Header{"X-Forwarded-For": {"198.51.100.7"}}, nil)
	mustStatus(t, resp, http.StatusOK)
	_ = body

	h.server.Close()
	denied := h.events.ofType(audit.TypeDownloadDenied)
	counts := map[string]string{}
	for _, e := range denied[5:] {
		if e.ClientAddr != "203.0.113.66" {
			t.Errorf("aggregate for %q", e.ClientAddr)
		}
		counts[e.Reason] = e.Detail
	}
	if len(denied) != 7 ||
		!strings.HasPrefix(counts["unknown"], "aggregated: 15 denials (reason unknown) from 203.0.113.66 between ") ||
		!strings.HasPrefix(counts[reasonRateLimited], "aggregated: 80 denials (reason rate_limited) from 203.0.113.66 between ") {
		t.Fatalf("events after close: %d, aggregates %v", len(denied), counts)
	}
}

// Two landing pages opened from webmail (no cookie sent, each minting a
// new one): the first page's form, posted with the second page's cookie,
// still downloads. Used to answer 403 Download not confirmed.
func TestTwoTabsFromWebmail(t *testing.T) {
	h := newHarness(t)
	first := h.addLink(linkSpec{name: "one.pdf", content: []byte("first file")})
	second := h.addLink(linkSpec{name: "two.pdf", content: []byte("second file")})
	tab := func(token string) (csrf, cookie string) {
		c := h.browser(false) // a fresh jar: no cookie sent, as SameSite=Strict from another site
		_, csrf = h.landing(c, token)
		return csrf, jarCookie(t, c, h.http.URL)
	}
	csrf1, cookie1 := tab(first.token)
	csrf2, cookie2 := tab(second.token)
	if cookie1 == cookie2 {
		t.Fatal("both tabs got the same cookie; the test needs the second to overwrite the first")
	}
	for _, post := range []struct {
		name, token, csrf, cookie string
		want                      []byte
	}{
		{"first tab with the second tab's cookie", first.token, csrf1, cookie2, []byte("first file")},
		{"second tab", second.token, csrf2, cookie2, []byte("second file")},
	} {
		req := formPost(h, post.token, url.Values{csrfField: {post.csrf}}, post.cookie)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("Origin", h.http.URL)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: status %d, want 303", post.name, resp.StatusCode)
		}
		resp2, body := h.do(http.DefaultClient, http.MethodGet, resp.Header.Get("Location"), nil, nil)
		mustStatus(t, resp2, http.StatusOK)
		if !bytes.Equal(body, post.want) {
			t.Errorf("%s: got %q", post.name, body)
		}
	}
	// Back and pressing Download again works too (the form is reusable
	// until the link's limit says otherwise).
	req := formPost(h, first.token, url.Values{csrfField: {csrf1}}, cookie1)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mustStatus(t, resp, http.StatusSeeOther)
}

// The SHA-256 is shown in four groups of 16 with break opportunities only
// between them, and the stylesheet no longer breaks it anywhere.
func TestHashShownInEvenGroups(t *testing.T) {
	h := newHarness(t)
	l := h.addLink(linkSpec{name: "f.txt", content: []byte("hash me")})
	resp, body := h.do(h.browser(false), http.MethodGet, "/d/"+l.token, nil, nil)
	mustStatus(t, resp, http.StatusOK)
	page := string(body)
	sum := l.file.SHA256
	want := "<code>" + sum[0:16] + "<wbr>" + sum[16:32] + "<wbr>" + sum[32:48] + "<wbr>" + sum[48:64] + "</code>"
	if !strings.Contains(page, want) {
		t.Errorf("page lacks %s", want)
	}
	if strings.Contains(page, "break-all") {
		t.Error("stylesheet still breaks the hash anywhere")
	}
}

func mustPrefixes(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

// TestSteadySlowReaderIsNotCut: StallTimeout cuts a client that stopped
// reading, not one that keeps reading at a modest steady rate. Every
// write of the file gets one fresh deadline, so a write must not carry
// more than such a client takes within StallTimeout (README: "each 128
// KiB chunk gets a fresh 60-second write deadline"). Here the client takes
// 320 KiB/s through small socket buffers (as on a slow link, where the
// kernel does not grow them) and StallTimeout is 2 s: 128 KiB need 0.4 s,
// a 1 MiB write about 2.9 s, and the download was cut.
func TestSteadySlowReaderIsNotCut(t *testing.T) {
	const size = 4 << 20
	content := testContent(size)
	h := newHarness(t, func(o *Options) {
		o.StallTimeout = 2 * time.Second
		o.SignedURLTTL = time.Hour
	})
	l := h.addLink(linkSpec{name: "big.bin", content: content})
	loc := h.signedURL(l.token)
	// The same handler behind a listener whose connections keep a small
	// send buffer (a fixed size turns off the kernel's autotuning).
	srv := httptest.NewUnstartedServer(h.http.Config.Handler)
	srv.Config.ConnState = func(c net.Conn, state http.ConnState) {
		if tc, ok := c.(*net.TCPConn); ok && state == http.StateNew {
			tc.SetWriteBuffer(32 << 10)
		}
	}
	srv.Start()
	defer srv.Close()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
		})
		return cmp.Or(err, serr)
	}}
	c, err := d.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", loc)
	// 16 KiB every 50 ms: 320 KiB/s, never a pause near StallTimeout.
	paced := &pacedReader{r: c, chunk: 16 << 10, every: 50 * time.Millisecond}
	resp, err := http.ReadResponse(bufio.NewReaderSize(paced, 16<<10), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	mustStatus(t, resp, http.StatusOK)
	start := time.Now()
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("a client reading 320 KiB/s without pause was cut after %d of %d bytes and %s (StallTimeout 2 s): %v",
			len(got), size, time.Since(start).Round(time.Millisecond), err)
	}
}

// pacedReader reads at most chunk bytes per call, one call every every.
type pacedReader struct {
	r     io.Reader
	chunk int
	every time.Duration
	next  time.Time
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if d := time.Until(p.next); d > 0 {
		time.Sleep(d)
	}
	p.next = time.Now().Add(p.every)
	if len(b) > p.chunk {
		b = b[:p.chunk]
	}
	return p.r.Read(b)
}
