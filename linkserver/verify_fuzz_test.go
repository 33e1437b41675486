package linkserver

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
)

// FuzzVerifyForm throws hostile verification forms (any op, address and
// code, extra fields) at /v/d/{token} of a real server with a SQLite
// store. Whatever the input: no panic, no 5xx, every answer a page, never
// a session (nobody can know a code here), and no verification event
// names an address that is not one of the message's recipients.
func FuzzVerifyForm(f *testing.F) {
	h := newHarness(f, func(o *Options) { o.DenialLimit, o.DenialBurst = 1<<30, 1<<30 })
	m := h.addVerified("fuzz.pdf", "bob@example.net", "ユーザー@例え.jp")
	handler := h.server.Handler()
	var step atomic.Int64

	f.Add("send", "bob@example.net", "", "")
	f.Add("code", "Bob@EXAMPLE.net", "12345678", "")
	f.Add("code", "ユーザー@xn--r8jz45g.jp", "１２３４ ５６７８", "op=send")
	f.Add("send", "bob@example.net\r\nBcc: eve@evil.example", "", "email=eve@evil.example")
	f.Add("send", strings.Repeat("a", 300)+"@example.net", "", "")
	f.Add("", "@", "", "%zz")
	f.Add("code", "\"a b\"@example.net", strings.Repeat("9", 100), "code=1&code=2")

	f.Fuzz(func(t *testing.T, op, email, code, extra string) {
		// Inputs mostly get fresh rate windows and lockouts; the clock
		// wraps before the link's week is over.
		now := testStart.Add(time.Duration(step.Add(1)%400) * 20 * time.Minute)
		h.clock.Set(now)
		vals := url.Values{csrfField: {h.server.verifyFormToken("d", store.HashToken(m.link.token), now)},
			"op": {op}, "email": {email}, "code": {code}}
		body := vals.Encode()
		if extra != "" {
			body += "&" + extra
		}
		req := httptest.NewRequest(http.MethodPost, "/v/d/"+m.link.token, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusForbidden, http.StatusTooManyRequests:
			if !strings.Contains(w.Body.String(), "<html") {
				t.Fatalf("%d without a page", w.Code)
			}
		default:
			t.Fatalf("verification form answered %d: %s", w.Code, w.Body.String())
		}
		for _, c := range w.Result().Cookies() {
			if strings.HasPrefix(c.Name, sessionCookiePfx) {
				t.Fatal("a session without a code")
			}
		}
		h.server.verify.wait()
		for _, typ := range []audit.EventType{audit.TypeVerifySent, audit.TypeVerifyFailed, audit.TypeVerifyOK, audit.TypeVerifyLocked} {
			for _, e := range h.events.ofType(typ) {
				for _, r := range e.Recipients {
					if !slices.Contains(m.msg.Recipients, r) {
						t.Fatalf("%s names %q, not a recipient", typ, r)
					}
				}
			}
		}
		if typ := audit.TypeVerifyOK; len(h.events.ofType(typ)) != 0 {
			t.Fatal("verify.ok without a code")
		}
	})
}
