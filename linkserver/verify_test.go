package linkserver

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
)

// TestVerifyRecipientFlow is the recipient's whole way on both backends:
// the landing page, Download asks for the address, the code arrives at the
// next hop, the code opens a session, and the download is recorded with
// the recipient. The address is typed in another case than stored.
func TestVerifyRecipientFlow(t *testing.T) {
	for _, backend := range []string{backendSQLite, backendRedis} {
		t.Run(backend, func(t *testing.T) {
			v := newVerifyRig(t, backend)
			m := v.addVerified("report.pdf", "Bob@Example.net", "carol@example.org")
			c := v.browser(false)
			base := v.http.URL

			resp, body := v.do(c, http.MethodGet, "/d/"+m.link.token, nil, nil)
			mustStatus(t, resp, http.StatusOK)
			if !bytes.Contains(body, []byte("pressing Download asks for your mail address")) {
				t.Errorf("landing page does not say a code will be asked for:\n%s", body)
			}
			if len(v.events.ofType(audit.TypeLinkViewed)) != 1 {
				t.Errorf("link.viewed events: %d, want 1", len(v.events.ofType(audit.TypeLinkViewed)))
			}

			send := v.addressForm(base, c, m.link.token)
			if send.action != "/v/d/"+m.link.token {
				t.Errorf("address form action %q, want /v/d/{token}", send.action)
			}
			if v.downloads(m.link.id) != 0 {
				t.Fatal("Download without a session counted a download")
			}
			denied := v.events.ofType(audit.TypeDownloadDenied)
			if len(denied) != 1 || denied[0].Reason != reasonUnverified {
				t.Errorf("download.denied events %+v, want one with reason %q", denied, reasonUnverified)
			}

			// The local part as stored, the domain in any case.
			resp, body = sendCode(t, c, base, send, "Bob@EXAMPLE.NET")
			mustStatus(t, resp, http.StatusOK)
			code := v.waitCode("Bob@Example.net", 1)
			mail := v.mailsTo("Bob@Example.net")[0]
			if len(mail.To) != 1 || mail.From != "" && !strings.Contains(mail.From, "@") {
				t.Errorf("code mail envelope: from %q to %v", mail.From, mail.To)
			}
			for _, want := range []string{"Auto-Submitted: auto-generated", "To: <Bob@Example.net>", "Subject: Your verification code: " + code} {
				if !bytes.Contains(mail.Data, []byte(want)) {
					t.Errorf("code mail lacks %q:\n%s", want, mail.Data)
				}
			}
			sent := v.waitEvent(audit.TypeVerifySent, func(audit.Event) bool { return true })
			if !slices.Equal(sent.Recipients, []string{"Bob@Example.net"}) || sent.MessageID != m.msg.ID {
				t.Errorf("verify.sent = %+v, want recipient Bob@Example.net of message %s", sent, m.msg.ID)
			}

			codeForm := verifyForms(t, body)["code"]
			resp, _ = enterCode(t, c, base, codeForm, "Bob@example.NET", code[:4]+" "+code[4:])
			mustStatus(t, resp, http.StatusSeeOther)
			if loc := resp.Header.Get("Location"); loc != "/d/"+m.link.token {
				t.Errorf("after the code: Location %q, want back to /d/{token}", loc)
			}
			ck := sessionCookie(resp)
			if ck == nil {
				t.Fatal("no session cookie after a right code")
			}
			if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Secure {
				t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, not Secure over http", ck)
			}
			ok := v.events.ofType(audit.TypeVerifyOK)
			if len(ok) != 1 || !slices.Equal(ok[0].Recipients, []string{"Bob@Example.net"}) {
				t.Errorf("verify.ok events %+v", ok)
			}

			resp, body = v.do(c, http.MethodGet, "/d/"+m.link.token, nil, nil)
			mustStatus(t, resp, http.StatusOK)
			if !bytes.Contains(body, []byte("<dd>Bob@Example.net</dd>")) {
				t.Errorf("landing page does not show the verified recipient:\n%s", body)
			}
			a, f := formRE.FindSubmatch(body), csrfRE.FindSubmatch(body)
			resp, _ = postForm(t, c, base, string(a[1]), url.Values{csrfField: {string(f[1])}})
			mustStatus(t, resp, http.StatusSeeOther)
			loc := resp.Header.Get("Location")
			if !strings.Contains(loc, "&r=0&") {
				t.Errorf("signed URL %q does not name recipient 0", loc)
			}
			resp, got := v.do(http.DefaultClient, http.MethodGet, loc, nil, nil)
			mustStatus(t, resp, http.StatusOK)
			if !bytes.Equal(got, m.content) {
				t.Fatal("downloaded bytes differ")
			}
			dl := v.events.ofType(audit.TypeDownloadOK)
			if len(dl) != 1 || !slices.Equal(dl[0].Recipients, []string{"Bob@Example.net"}) {
				t.Errorf("download.ok events %+v, want one naming Bob@Example.net", dl)
			}

			// The r of a signed URL is signed: changing it is refused.
			forged := strings.Replace(loc, "&r=0&", "&r=1&", 1)
			resp, _ = v.do(http.DefaultClient, http.MethodGet, forged, nil, nil)
			mustStatus(t, resp, http.StatusForbidden)
			stripped := strings.Replace(loc, "&r=0&", "&", 1)
			resp, _ = v.do(http.DefaultClient, http.MethodGet, stripped, nil, nil)
			mustStatus(t, resp, http.StatusForbidden)
		})
	}
}

// TestVerifyAcrossInstances: on Redis, the code requested through one
// instance is checked by another, which then serves the download; wrong
// codes spread over both instances add up to one lockout.
func TestVerifyAcrossInstances(t *testing.T) {
	v := newVerifyRig(t, backendRedis)
	other := v.twin()
	m := v.addVerified("report.pdf", "bob@example.net")
	c := v.browser(false)

	send := v.addressForm(v.http.URL, c, m.link.token)
	_, body := sendCode(t, c, v.http.URL, send, "bob@example.net")
	code := v.waitCode("bob@example.net", 1)
	resp, _ := enterCode(t, c, other.URL, verifyForms(t, body)["code"], "bob@example.net", code)
	mustStatus(t, resp, http.StatusSeeOther)
	ck := sessionCookie(resp)
	if ck == nil {
		t.Fatal("no session cookie from the second instance")
	}
	// The first instance honours the second one's session.
	req, _ := http.NewRequest(http.MethodGet, v.http.URL+"/d/"+m.link.token, nil)
	req.AddCookie(ck)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mustStatus(t, resp, http.StatusOK)

	// Brute force across instances: three wrong codes on one, two on the
	// other lock bob out; the right code is then refused on both.
	m2 := v.addVerified("second.pdf", "bob@example.net")
	c2 := v.browser(false)
	send = v.addressForm(v.http.URL, c2, m2.link.token)
	_, body = sendCode(t, c2, v.http.URL, send, "bob@example.net")
	code = v.waitCode("bob@example.net", 2)
	form := verifyForms(t, body)["code"]
	wrong := wrongCode(code)
	for i, base := range []string{v.http.URL, other.URL, v.http.URL, other.URL} {
		resp, _ := enterCode(t, c2, base, form, "bob@example.net", wrong)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("wrong code %d: status %d, want 403", i+1, resp.StatusCode)
		}
	}
	resp, _ = enterCode(t, c2, v.http.URL, form, "bob@example.net", wrong)
	mustStatus(t, resp, http.StatusTooManyRequests)
	for _, base := range []string{v.http.URL, other.URL} {
		resp, _ := enterCode(t, c2, base, form, "bob@example.net", code)
		mustStatus(t, resp, http.StatusTooManyRequests)
		if sessionCookie(resp) != nil {
			t.Fatal("a locked recipient got a session")
		}
	}
}

// wrongCode returns another code of the same length.
func wrongCode(code string) string {
	b := []byte(code)
	b[0] = '0' + (b[0]-'0'+1)%10
	return string(b)
}

// TestVerifyStrangerGetsSamePage: an address that is not a recipient gets
// the same status and the same page as a recipient's (the typed address
// aside), no mail goes out for it, and wrong codes for it are counted and
// locked exactly like a recipient's, so neither answer tells a recipient
// from a stranger.
func TestVerifyStrangerGetsSamePage(t *testing.T) {
	v := newVerifyRig(t, backendSQLite)
	m := v.addVerified("report.pdf", "bob@example.net")
	c := v.browser(false)
	send := v.addressForm(v.http.URL, c, m.link.token)

	const stranger = "eve@example.net"
	r1, recipientPage := sendCode(t, c, v.http.URL, send, "bob@example.net")
	r2, strangerPage := sendCode(t, c, v.http.URL, send, stranger)
	if r1.StatusCode != r2.StatusCode {
		t.Errorf("status for a recipient %d, for a stranger %d", r1.StatusCode, r2.StatusCode)
	}
	if !bytes.Equal(bytes.ReplaceAll(recipientPage, []byte("bob@example.net"), []byte("ADDR")),
		bytes.ReplaceAll(strangerPage, []byte(stranger), []byte("ADDR"))) {
		t.Errorf("pages differ:\nrecipient:\n%s\nstranger:\n%s", recipientPage, strangerPage)
	}
	for _, h := range []string{"Content-Length", "Set-Cookie", "Cache-Control"} {
		if r1.Header.Get(h) != r2.Header.Get(h) {
			t.Errorf("header %s: recipient %q, stranger %q", h, r1.Header.Get(h), r2.Header.Get(h))
		}
	}
	v.waitEvent(audit.TypeVerifyFailed, func(e audit.Event) bool { return e.Reason == "not_recipient" })
	code := v.waitCode("bob@example.net", 1)
	waitQueueEmpty(t, v)
	if n := len(v.hop.Messages()); n != 1 {
		t.Errorf("the next hop got %d mails, want only the recipient's", n)
	}
	if len(v.mailsTo(stranger)) != 0 {
		t.Error("a code went to a stranger")
	}

	// Wrong codes: the same answers, in the same order, for both.
	form := verifyForms(t, recipientPage)["code"]
	for i := range 5 {
		ra, pa := enterCode(t, c, v.http.URL, form, "bob@example.net", wrongCode(code))
		rb, pb := enterCode(t, c, v.http.URL, form, stranger, wrongCode(code))
		if ra.StatusCode != rb.StatusCode {
			t.Fatalf("wrong code %d: recipient %d, stranger %d", i+1, ra.StatusCode, rb.StatusCode)
		}
		if !bytes.Equal(bytes.ReplaceAll(pa, []byte("bob@example.net"), []byte("ADDR")),
			bytes.ReplaceAll(pb, []byte(stranger), []byte("ADDR"))) {
			t.Fatalf("wrong code %d: pages differ:\n%s\n----\n%s", i+1, pa, pb)
		}
		want := http.StatusForbidden
		if i == 4 {
			want = http.StatusTooManyRequests
		}
		mustStatus(t, ra, want)
	}
}

// waitQueueEmpty waits until the notifier has nothing left to send.
func waitQueueEmpty(t *testing.T, v *verifyRig) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := v.opts.Notify.Sender.Pending()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d notices still queued", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestVerifyLockout: five wrong codes lock the recipient out of the
// message for 15 minutes (verify.locked); the right code is refused while
// locked; afterwards the old code is void and a new one works.
func TestVerifyLockout(t *testing.T) {
	v := newVerifyRig(t, backendSQLite)
	m := v.addVerified("report.pdf", "bob@example.net")
	c := v.browser(false)
	send := v.addressForm(v.http.URL, c, m.link.token)
	_, body := sendCode(t, c, v.http.URL, send, "bob@example.net")
	code := v.waitCode("bob@example.net", 1)
	form := verifyForms(t, body)["code"]

	for i := 1; i <= 4; i++ {
		resp, page := enterCode(t, c, v.http.URL, form, "bob@example.net", wrongCode(code))
		mustStatus(t, resp, http.StatusForbidden)
		if !bytes.Contains(page, []byte("That code is not right")) {
			t.Errorf("wrong code %d: page does not say so:\n%s", i, page)
		}
	}
	resp, page := enterCode(t, c, v.http.URL, form, "bob@example.net", wrongCode(code))
	mustStatus(t, resp, http.StatusTooManyRequests)
	if !bytes.Contains(page, []byte("Too many wrong codes")) || resp.Header.Get("Retry-After") != "900" {
		t.Errorf("fifth wrong code: Retry-After %q, page:\n%s", resp.Header.Get("Retry-After"), page)
	}
	locked := v.events.ofType(audit.TypeVerifyLocked)
	if len(locked) != 1 || !slices.Equal(locked[0].Recipients, []string{"bob@example.net"}) {
		t.Errorf("verify.locked events %+v", locked)
	}
	if n := len(v.events.ofType(audit.TypeVerifyFailed)); n != 4 {
		t.Errorf("verify.failed events: %d, want 4", n)
	}

	resp, _ = enterCode(t, c, v.http.URL, form, "bob@example.net", code)
	mustStatus(t, resp, http.StatusTooManyRequests)
	if sessionCookie(resp) != nil {
		t.Fatal("right code while locked gave a session")
	}
	// No code is mailed while locked.
	sendCode(t, c, v.http.URL, send, "bob@example.net")
	v.waitEvent(audit.TypeVerifyFailed, func(e audit.Event) bool { return e.Reason == "locked" && len(e.Recipients) == 1 && e.Detail == "" })

	v.clock.Set(testStart.Add(16 * time.Minute))
	send = v.addressForm(v.http.URL, c, m.link.token)
	resp, _ = enterCode(t, c, v.http.URL, form, "bob@example.net", code)
	mustStatus(t, resp, http.StatusForbidden)
	_, body = sendCode(t, c, v.http.URL, send, "bob@example.net")
	fresh := v.waitCode("bob@example.net", 2)
	resp, _ = enterCode(t, c, v.http.URL, verifyForms(t, body)["code"], "bob@example.net", fresh)
	mustStatus(t, resp, http.StatusSeeOther)
	if sessionCookie(resp) == nil {
		t.Fatal("new code after the lockout gave no session")
	}
	if n := len(v.mailsTo("bob@example.net")); n != 2 {
		t.Errorf("%d code mails, want 2 (none while locked)", n)
	}
}

// TestVerifyCodeSingleUseAndExpiry: a code works once (a second browser
// with the same code is refused) and not at or after 10 minutes.
func TestVerifyCodeSingleUseAndExpiry(t *testing.T) {
	for _, backend := range []string{backendSQLite, backendRedis} {
		t.Run(backend, func(t *testing.T) {
			v := newVerifyRig(t, backend)
			m := v.addVerified("report.pdf", "bob@example.net")
			c := v.browser(false)
			send := v.addressForm(v.http.URL, c, m.link.token)
			_, body := sendCode(t, c, v.http.URL, send, "bob@example.net")
			code := v.waitCode("bob@example.net", 1)
			form := verifyForms(t, body)["code"]
			resp, _ := enterCode(t, c, v.http.URL, form, "bob@example.net", code)
			mustStatus(t, resp, http.StatusSeeOther)
			resp, _ = enterCode(t, v.browser(false), v.http.URL, form, "bob@example.net", code)
			mustStatus(t, resp, http.StatusForbidden)
			if sessionCookie(resp) != nil {
				t.Fatal("a used code gave a second session")
			}

			// A browser with a session asks for no new code.
			resp, _ = sendCode(t, c, v.http.URL, send, "bob@example.net")
			mustStatus(t, resp, http.StatusSeeOther)

			c2 := v.browser(false)
			_, body = sendCode(t, c2, v.http.URL, send, "bob@example.net")
			code = v.waitCode("bob@example.net", 2)
			v.clock.Set(testStart.Add(codeTTL))
			resp, _ = enterCode(t, c2, v.http.URL, verifyForms(t, body)["code"], "bob@example.net", code)
			mustStatus(t, resp, http.StatusForbidden)
			if sessionCookie(resp) != nil {
				t.Fatal("an expired code gave a session")
			}
		})
	}
}

// TestVerifyRateLimits: a recipient gets at most three codes per ten
// minutes (further requests get the same page and no mail); a client gets
// ten requests per ten minutes, then 429.
func TestVerifyRateLimits(t *testing.T) {
	v := newVerifyRig(t, backendSQLite)
	m := v.addVerified("report.pdf", "bob@example.net")
	c := v.browser(false)
	send := v.addressForm(v.http.URL, c, m.link.token)
	var first []byte
	for i := range 5 {
		resp, body := sendCode(t, c, v.http.URL, send, "bob@example.net")
		mustStatus(t, resp, http.StatusOK)
		if i == 0 {
			first = body
		} else if !bytes.Equal(body, first) {
			t.Errorf("request %d: page differs from the first", i+1)
		}
	}
	for range 2 {
		v.waitEvent(audit.TypeVerifyFailed, func(e audit.Event) bool { return e.Reason == "recipient_limited" })
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(v.events.ofType(audit.TypeVerifyFailed))+len(v.events.ofType(audit.TypeVerifySent)) < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	v.waitCode("bob@example.net", 3)
	waitQueueEmpty(t, v)
	if n := len(v.mailsTo("bob@example.net")); n != 3 {
		t.Errorf("%d code mails in ten minutes, want 3", n)
	}
	if n := len(v.events.ofType(audit.TypeVerifySent)); n != 3 {
		t.Errorf("verify.sent events %d, want 3", n)
	}

	// Five more requests from this client (other addresses) reach ten;
	// the eleventh is refused with 429.
	for i := range 5 {
		resp, _ := sendCode(t, c, v.http.URL, send, "someone"+string(rune('a'+i))+"@example.net")
		mustStatus(t, resp, http.StatusOK)
	}
	resp, body := sendCode(t, c, v.http.URL, send, "bob@example.net")
	mustStatus(t, resp, http.StatusTooManyRequests)
	if !bytes.Contains(body, []byte("Too many codes were requested")) {
		t.Errorf("429 page:\n%s", body)
	}

	// A new window opens after ten minutes.
	v.clock.Set(testStart.Add(sendWindow))
	send = v.addressForm(v.http.URL, c, m.link.token)
	resp, _ = sendCode(t, c, v.http.URL, send, "bob@example.net")
	mustStatus(t, resp, http.StatusOK)
	v.waitCode("bob@example.net", 4)
}

// TestVerifySessionCookie: the session is Secure on https; one message's
// session does not open another message; a forged or altered cookie, or
// one past its expiry, is refused.
func TestVerifySessionCookie(t *testing.T) {
	v := newVerifyRig(t, backendSQLite, func(o *Options) { o.HTTPS = true })
	a := v.addVerified("a.pdf", "bob@example.net", "carol@example.net")
	// B has the same recipients: only the binding to the message keeps
	// A's session out.
	b := v.addVerified("b.pdf", "bob@example.net", "carol@example.net")
	c := v.browser(false)
	send := v.addressForm(v.http.URL, c, a.link.token)
	_, body := sendCode(t, c, v.http.URL, send, "carol@example.net")
	code := v.waitCode("carol@example.net", 1)
	resp, _ := enterCode(t, c, v.http.URL, verifyForms(t, body)["code"], "carol@example.net", code)
	mustStatus(t, resp, http.StatusSeeOther)
	ck := sessionCookie(resp)
	if ck == nil || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie over https %+v: want Secure, HttpOnly, SameSite=Strict", ck)
	}

	download := func(token string, cookies ...*http.Cookie) int {
		t.Helper()
		cl := v.browser(false)
		resp, body := v.do(cl, http.MethodGet, "/d/"+token, nil, nil)
		mustStatus(t, resp, http.StatusOK)
		a, f := formRE.FindSubmatch(body), csrfRE.FindSubmatch(body)
		form := url.Values{csrfField: {string(f[1])}}
		req, _ := http.NewRequest(http.MethodPost, v.http.URL+string(a[1]), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: csrfCookie, Value: jarCookieInsecure(t, resp)})
		for _, c := range cookies {
			req.AddCookie(c)
		}
		r, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if got := download(a.link.token, ck); got != http.StatusSeeOther {
		t.Fatalf("message A with its session: %d, want 303", got)
	}
	// A's cookie, under its own name or under B's, does not open B.
	if got := download(b.link.token, ck); got != http.StatusForbidden {
		t.Errorf("message B with A's session: %d, want 403", got)
	}
	bName := v.server.sessionCookieName(b.msg.ID)
	if got := download(b.link.token, &http.Cookie{Name: bName, Value: ck.Value}); got != http.StatusForbidden {
		t.Errorf("message B with A's session renamed: %d, want 403", got)
	}
	// Tampering: each byte of the value flipped.
	raw := []byte(ck.Value)
	for i := range raw {
		mod := slices.Clone(raw)
		if mod[i] == 'A' {
			mod[i] = 'B'
		} else {
			mod[i] = 'A'
		}
		if got := download(a.link.token, &http.Cookie{Name: ck.Name, Value: string(mod)}); got != http.StatusForbidden {
			t.Errorf("cookie with byte %d changed: %d, want 403", i, got)
		}
	}
	// Recipient index 0 (bob) with carol's MAC: refused.
	forged := v.server.sessionValue(a.msg, 1, testStart.Add(time.Hour))
	fb := []byte(forged)
	fb[2] = 'A' // index 1 → 0 lives in the first bytes
	if got := download(a.link.token, &http.Cookie{Name: ck.Name, Value: string(fb)}); got != http.StatusForbidden {
		t.Errorf("cookie naming another recipient: %d, want 403", got)
	}
	// A cookie signed with another key.
	other, err := New(Options{Store: v.store, Blobs: v.blobs, MACKey: bytes.Repeat([]byte{7}, 32), Audit: v.events, Now: v.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if got := download(a.link.token, &http.Cookie{Name: ck.Name, Value: other.sessionValue(a.msg, 1, testStart.Add(time.Hour))}); got != http.StatusForbidden {
		t.Errorf("cookie of another key: %d, want 403", got)
	}
	// Past its expiry.
	v.clock.Set(testStart.Add(sessionTTL))
	if got := download(a.link.token, ck); got != http.StatusForbidden {
		t.Errorf("session after %s: %d, want 403", sessionTTL, got)
	}
}

// jarCookieInsecure returns the ag_csrf value a response set (the jar
// keeps Secure cookies away from an http test server).
func jarCookieInsecure(t *testing.T, resp *http.Response) string {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == csrfCookie {
			return c.Value
		}
	}
	t.Fatal("landing page set no ag_csrf cookie")
	return ""
}

// TestVerifyFormAttacks: the code forms refuse cross-site posts, missing
// or foreign form tokens, GET; an address with a line break or a second
// address never reaches a mail header or the next hop.
func TestVerifyFormAttacks(t *testing.T) {
	v := newVerifyRig(t, backendSQLite)
	m := v.addVerified("report.pdf", "bob@example.net")
	other := v.addVerified("other.pdf", "bob@example.net")
	c := v.browser(false)
	send := v.addressForm(v.http.URL, c, m.link.token)
	otherSend := v.addressForm(v.http.URL, c, other.link.token)

	post := func(action string, vals url.Values, hdr http.Header) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, v.http.URL+action, strings.NewReader(vals.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, vs := range hdr {
			req.Header[k] = vs
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	good := url.Values{csrfField: {send.csrf}, "op": {"send"}, "email": {"bob@example.net"}}
	for name, tc := range map[string]struct {
		action string
		vals   url.Values
		hdr    http.Header
	}{
		"cross-site":        {send.action, good, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		"foreign origin":    {send.action, good, http.Header{"Origin": {"https://evil.example"}}},
		"no token":          {send.action, url.Values{"op": {"send"}, "email": {"bob@example.net"}}, nil},
		"other link token":  {send.action, url.Values{csrfField: {otherSend.csrf}, "op": {"send"}, "email": {"bob@example.net"}}, nil},
		"landing token":     {send.action, url.Values{csrfField: {v.server.formToken(store.HashToken(m.link.token), testStart)}, "op": {"send"}, "email": {"bob@example.net"}}, nil},
		"message kind swap": {"/v/m/" + m.link.token, good, nil},
	} {
		if got := post(tc.action, tc.vals, tc.hdr); got != http.StatusForbidden && got != http.StatusNotFound {
			t.Errorf("%s: status %d, want 403 (or 404)", name, got)
		}
	}
	if got := post("/v/x/"+m.link.token, good, nil); got != http.StatusNotFound {
		t.Errorf("unknown kind: %d, want 404", got)
	}
	resp, _ := v.do(c, http.MethodGet, send.action, nil, nil)
	mustStatus(t, resp, http.StatusMethodNotAllowed)

	// Header injection through the address field.
	for _, evil := range []string{
		"bob@example.net\r\nBcc: eve@evil.example",
		"bob@example.net\nBcc: eve@evil.example",
		"bob@example.net, eve@evil.example",
		"eve@evil.example\r\n.\r\nMAIL FROM:<x@y>",
		"<bob@example.net>",
	} {
		resp, _ := sendCode(t, c, v.http.URL, send, evil)
		if resp.StatusCode != http.StatusBadRequest && resp.StatusCode != http.StatusOK {
			t.Errorf("address %q: status %d", evil, resp.StatusCode)
		}
	}
	if got := len(v.events.ofType(audit.TypeVerifySent)); got != 0 {
		t.Errorf("%d codes sent for malformed addresses", got)
	}
	// Drain any background job, then check the next hop.
	v.server.verify.wait()
	waitQueueEmpty(t, v)
	for _, msg := range v.hop.Messages() {
		if bytes.Contains(bytes.ToLower(msg.Data), []byte("evil.example")) || slices.Contains(msg.To, "eve@evil.example") {
			t.Errorf("a mail reached the next hop with the injected address: to %v\n%s", msg.To, msg.Data)
		}
	}
	if n := len(v.hop.Messages()); n != 0 {
		t.Errorf("%d mails for malformed addresses", n)
	}
}

// TestVerifyMessagePageKind: the forms also serve the message page
// (/v/m/{token}) and bring the visitor back to /m/{token}; a message page
// token cannot stand in for a link token.
func TestVerifyMessagePageKind(t *testing.T) {
	v := newVerifyRig(t, backendSQLite)
	m := v.addVerified("report.pdf", "bob@example.net")
	c := v.browser(false)
	f := verifyForm{action: "/v/m/" + m.pageToken, csrf: v.server.verifyFormToken("m", store.HashToken(m.pageToken), testStart)}
	resp, body := sendCode(t, c, v.http.URL, f, "bob@example.net")
	mustStatus(t, resp, http.StatusOK)
	code := v.waitCode("bob@example.net", 1)
	resp, _ = enterCode(t, c, v.http.URL, verifyForms(t, body)["code"], "bob@example.net", code)
	mustStatus(t, resp, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/m/"+m.pageToken {
		t.Errorf("Location %q, want /m/{token}", loc)
	}
	// The gate lets the session through for this message.
	req := httptestRequest(t, http.MethodPost, "/m/"+m.pageToken, m.pageToken)
	req.AddCookie(sessionCookie(resp))
	rec := newRecorder()
	rcpt, ok := v.server.requireRecipient(rec, req, m.msg)
	if !ok || rcpt != "bob@example.net" {
		t.Errorf("requireRecipient with the session = %q, %v", rcpt, ok)
	}
	// Without it: the address form pointing at /v/m/{token}, 403.
	req = httptestRequest(t, http.MethodPost, "/m/"+m.pageToken, m.pageToken)
	rec = newRecorder()
	if _, ok := v.server.requireRecipient(rec, req, m.msg); ok {
		t.Fatal("requireRecipient without a session let the request through")
	}
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), `action="/v/m/`+m.pageToken+`"`) {
		t.Errorf("gate answer %d:\n%s", rec.Code, rec.Body.String())
	}
	// A message without verification passes with no recipient.
	none := m.msg
	none.Verify = store.VerifyNone
	if rcpt, ok := v.server.requireRecipient(newRecorder(), req, none); !ok || rcpt != "" {
		t.Errorf("requireRecipient without verification = %q, %v; want \"\", true", rcpt, ok)
	}
	_ = context.Background()
}

// TestVerifyConcurrentAttacks: 30 browsers at once. Wrong codes for one
// recipient count exactly five before the lock (the rest are refused as
// locked, the right code among them never wins), and 30 code requests at
// once mail at most three codes.
func TestVerifyConcurrentAttacks(t *testing.T) {
	for _, backend := range []string{backendSQLite, backendRedis} {
		t.Run(backend, func(t *testing.T) {
			v := newVerifyRig(t, backend)
			m := v.addVerified("report.pdf", "bob@example.net")
			c := v.browser(false)
			send := v.addressForm(v.http.URL, c, m.link.token)
			_, body := sendCode(t, c, v.http.URL, send, "bob@example.net")
			code := v.waitCode("bob@example.net", 1)
			form := verifyForms(t, body)["code"]

			statuses := make([]int, 30)
			var wg sync.WaitGroup
			for i := range statuses {
				wg.Add(1)
				go func() {
					defer wg.Done()
					guess := fmt.Sprintf("%08d", (i*7919+1)%100000000)
					if guess == code {
						guess = wrongCode(code)
					}
					resp, _ := enterCode(t, v.browser(false), v.http.URL, form, "bob@example.net", guess)
					statuses[i] = resp.StatusCode
				}()
			}
			wg.Wait()
			count := map[int]int{}
			for _, s := range statuses {
				count[s]++
			}
			if count[http.StatusForbidden] != 4 || count[http.StatusTooManyRequests] != 26 {
				t.Errorf("30 concurrent wrong codes: statuses %v; want 4×403 then 26×429", count)
			}
			if n := len(v.events.ofType(audit.TypeVerifyLocked)); n != 1 {
				t.Errorf("verify.locked events %d, want 1", n)
			}
			resp, _ := enterCode(t, v.browser(false), v.http.URL, form, "bob@example.net", code)
			if resp.StatusCode != http.StatusTooManyRequests || sessionCookie(resp) != nil {
				t.Errorf("right code after the concurrent guesses: %d (want 429, no session)", resp.StatusCode)
			}

			// 30 code requests at once for another recipient.
			m2 := v.addVerified("second.pdf", "carol@example.net")
			v.clock.Set(testStart.Add(sendWindow)) // a fresh per-client window
			send2 := v.addressForm(v.http.URL, v.browser(false), m2.link.token)
			for range 30 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					sendCode(t, v.browser(false), v.http.URL, send2, "carol@example.net")
				}()
			}
			wg.Wait()
			v.server.verify.wait()
			waitQueueEmpty(t, v)
			if n := len(v.mailsTo("carol@example.net")); n != sendPerRecipient {
				t.Errorf("30 concurrent code requests mailed %d codes, want %d", n, sendPerRecipient)
			}
		})
	}
}

// TestVerifyClientAttemptLimit: one client trying codes for many
// addresses (each locked after five) is stopped after 30 attempts with
// 429, whatever the addresses.
func TestVerifyClientAttemptLimit(t *testing.T) {
	v := newVerifyRig(t, backendSQLite)
	m := v.addVerified("report.pdf", "bob@example.net")
	c := v.browser(false)
	send := v.addressForm(v.http.URL, c, m.link.token)
	_, body := sendCode(t, c, v.http.URL, send, "nobody@example.net")
	form := verifyForms(t, body)["code"]
	for i := range triesPerClient {
		addr := fmt.Sprintf("guess%d@example.net", i/maxCodeMiss)
		resp, _ := enterCode(t, c, v.http.URL, form, addr, "12345678")
		if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("attempt %d: status %d", i+1, resp.StatusCode)
		}
	}
	resp, page := enterCode(t, c, v.http.URL, form, "fresh@example.net", "12345678")
	mustStatus(t, resp, http.StatusTooManyRequests)
	if !bytes.Contains(page, []byte("Too many codes were tried from your network")) {
		t.Errorf("attempt %d: page\n%s", triesPerClient+1, page)
	}
	if resp.Header.Get("Retry-After") != "900" {
		t.Errorf("Retry-After %q, want 900", resp.Header.Get("Retry-After"))
	}
}

// TestVerifyFromWebmail: links opened from webmail carry no SameSite=Strict
// cookie. Two landing pages of the message are opened that way (the second
// overwrites the CSRF cookie), the recipient verifies in the first tab,
// then presses Download in the second: it downloads without a new code.
// Opened from webmail again later, the landing page still offers Download
// and the same-site POST finds the session.
func TestVerifyFromWebmail(t *testing.T) {
	v := newVerifyRig(t, backendSQLite)
	m := v.addVerified("report.pdf", "bob@example.net")
	base, err := url.Parse(v.http.URL)
	if err != nil {
		t.Fatal(err)
	}
	browser := v.browser(false)
	// fromWebmail GETs a landing page without sending cookies and stores
	// what it sets, as a browser does for a cross-site navigation.
	fromWebmail := func() (action, csrf string) {
		t.Helper()
		resp, body := v.do(&http.Client{}, http.MethodGet, "/d/"+m.link.token, nil, nil)
		mustStatus(t, resp, http.StatusOK)
		browser.Jar.SetCookies(base, resp.Cookies())
		a, f := formRE.FindSubmatch(body), csrfRE.FindSubmatch(body)
		if a == nil || f == nil {
			t.Fatalf("landing page from webmail has no Download form:\n%s", body)
		}
		return string(a[1]), string(f[1])
	}
	a1, f1 := fromWebmail()
	a2, f2 := fromWebmail()

	resp, body := postForm(t, browser, v.http.URL, a1, url.Values{csrfField: {f1}})
	mustStatus(t, resp, http.StatusForbidden)
	_, body = sendCode(t, browser, v.http.URL, verifyForms(t, body)["send"], "bob@example.net")
	code := v.waitCode("bob@example.net", 1)
	resp, _ = enterCode(t, browser, v.http.URL, verifyForms(t, body)["code"], "bob@example.net", code)
	mustStatus(t, resp, http.StatusSeeOther)

	resp, _ = postForm(t, browser, v.http.URL, a2, url.Values{csrfField: {f2}})
	mustStatus(t, resp, http.StatusSeeOther)
	a3, f3 := fromWebmail()
	resp, _ = postForm(t, browser, v.http.URL, a3, url.Values{csrfField: {f3}})
	mustStatus(t, resp, http.StatusSeeOther)
	if n := len(v.mailsTo("bob@example.net")); n != 1 {
		t.Errorf("%d code mails, want 1", n)
	}
	if n := v.downloads(m.link.id); n != 2 {
		t.Errorf("downloads counted %d, want 2", n)
	}
}

// TestVerifyPagesLanguageAndEscaping: the verification pages follow
// Accept-Language (Japanese here), keep the strict CSP, and echo a
// hostile address escaped.
func TestVerifyPagesLanguageAndEscaping(t *testing.T) {
	v := newVerifyRig(t, backendSQLite)
	m := v.addVerified("report.pdf", "bob@example.net")
	c := v.browser(false)
	send := v.addressForm(v.http.URL, c, m.link.token)

	req, _ := http.NewRequest(http.MethodPost, v.http.URL+send.action, strings.NewReader(url.Values{
		csrfField: {send.csrf}, "op": {"send"}, "email": {"ボブ@例え.jp"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept-Language", "ja,en;q=0.5")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	mustStatus(t, resp, http.StatusOK)
	page := buf.String()
	for _, want := range []string{`<html lang="ja">`, "確認コードの入力", "ボブ@例え.jp", `autocomplete="one-time-code"`} {
		if !strings.Contains(page, want) {
			t.Errorf("Japanese code page lacks %q:\n%s", want, page)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}

	for _, evil := range []string{`"><script>alert(1)</script>@example.net`, `x"onfocus="alert(1)@example.net`} {
		resp, body := sendCode(t, c, v.http.URL, send, evil)
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusBadRequest {
			t.Errorf("address %q: status %d", evil, resp.StatusCode)
		}
		if bytes.Contains(body, []byte("<script>")) || bytes.Contains(body, []byte(`"onfocus=`)) {
			t.Errorf("address %q echoed unescaped:\n%s", evil, body)
		}
	}
}
