package linkserver

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzDownloadRequest throws hostile forms and Range/If-Range headers at
// the landing form and the file handler of a real server (SQLite store,
// encrypted blobs). Whatever the input: no 5xx, no panic, a POST either
// redirects or is refused with a page, and a file answer is the file, a
// slice of it, or a bounded multipart of slices, never more than the file
// plus per-part overhead.
func FuzzDownloadRequest(f *testing.F) {
	h := newHarness(f, func(o *Options) {
		o.SignedURLTTL = 1000 * time.Hour
		o.DenialLimit, o.DenialBurst = 1<<30, 1
	})
	h.events.keep = false
	content := testContent(300_000)
	l := h.addLink(linkSpec{name: "fuzz.bin", content: content})
	c := h.browser(false)
	_, csrf := h.landing(c, l.token)
	cookie := jarCookie(f, c, h.http.URL)
	loc := h.signedURL(l.token)
	handler := h.server.Handler()

	f.Add("csrf="+url.QueryEscape(csrf), "application/x-www-form-urlencoded", "bytes=0-99", "")
	f.Add("csrf=x&csrf="+csrf, "application/x-www-form-urlencoded; charset=utf-8", "bytes=0-9,5-15", `"sha256:00"`)
	f.Add("%zz", "multipart/form-data; boundary=x", "bytes=-1", "Mon, 02 Jan 2006 15:04:05 GMT")
	f.Add("", "", "bytes=299999-,0-0,100-200", "")
	f.Add(strings.Repeat("a=b&", 2000), "application/x-www-form-urlencoded", "bytes="+strings.Repeat("1-1,", 40), "")
	f.Add("csrf="+csrf, "text/plain", "bytes=18446744073709551616-", "W/\"x\"")

	f.Fuzz(func(t *testing.T, form, contentType, rng, ifRange string) {
		// The form.
		req := httptest.NewRequest(http.MethodPost, "/d/"+l.token, strings.NewReader(form))
		req.Header.Set("Content-Type", contentType)
		req.AddCookie(&http.Cookie{Name: csrfCookie, Value: cookie})
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusSeeOther:
			if !strings.HasPrefix(w.Header().Get("Location"), "/f/"+l.id+"/") {
				t.Fatalf("303 to %q", w.Header().Get("Location"))
			}
		case http.StatusForbidden, http.StatusBadRequest:
			if !strings.Contains(w.Body.String(), "<html") {
				t.Fatalf("%d without a page", w.Code)
			}
		default:
			t.Fatalf("POST answered %d", w.Code)
		}

		// The file, with the fuzzed Range.
		_ = rangesAcceptable(rng, int64(len(content)))
		req = httptest.NewRequest(http.MethodGet, loc, nil)
		if !validHeaderValue(rng) || !validHeaderValue(ifRange) {
			return // not sendable over HTTP
		}
		req.Header.Set("Range", rng)
		if ifRange != "" {
			req.Header.Set("If-Range", ifRange)
		}
		w = httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		body := w.Body.Bytes()
		switch w.Code {
		case http.StatusOK:
			if !bytes.Equal(body, content) {
				t.Fatalf("200 with %d bytes, not the file", len(body))
			}
		case http.StatusPartialContent:
			if len(body) > len(content)+maxRanges*512 {
				t.Fatalf("206 with %d bytes for a %d-byte file", len(body), len(content))
			}
			if cr := w.Header().Get("Content-Range"); cr != "" {
				var from, to, size int
				if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &from, &to, &size); err != nil ||
					size != len(content) || !bytes.Equal(body, content[from:to+1]) {
					t.Fatalf("206 %q with %d bytes that are not that slice", cr, len(body))
				}
			}
		case http.StatusRequestedRangeNotSatisfiable:
			if cr := w.Header().Get("Content-Range"); cr != "bytes */"+strconv.Itoa(len(content)) {
				t.Fatalf("416 with Content-Range %q", cr)
			}
		default:
			t.Fatalf("GET with Range %q answered %d", rng, w.Code)
		}
	})
}

// validHeaderValue mirrors what net/http lets a client send.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < ' ' && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}
