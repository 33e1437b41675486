package linkserver

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/notify/mailtmpl"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// verifyRig is a link server whose code mail goes through a real notifier
// (composer, durable queue, sender) to a capturing go-smtp next hop.
type verifyRig struct {
	*harness
	hop *smtptest.Server
}

func newVerifyRig(t *testing.T, backend string, configure ...func(*Options)) *verifyRig {
	t.Helper()
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	cfg := append([]func(*Options){func(o *Options) {
		o.Notify = newTestNotifier(t, hop.Addr, o.Audit, o.Now)
	}}, configure...)
	return &verifyRig{harness: newHarnessOn(t, backend, cfg...), hop: hop}
}

// newTestNotifier builds a notifier the way serve does, on the test's
// clock, and runs its sender until the test ends.
func newTestNotifier(t *testing.T, hopAddr string, rec audit.Recorder, now func() time.Time) *notify.Service {
	t.Helper()
	dir := t.TempDir()
	ring, err := vault.OpenKeyRing(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := mailtmpl.Load("", testZone)
	if err != nil {
		t.Fatal(err)
	}
	composer, err := notify.NewComposer(notify.ComposerOptions{Templates: set, Hostname: "gw.corp.example",
		From: "Attachgate <attachgate@corp.example>", Language: "en", MarkerKey: ring.MACKey(), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	sender, err := notify.NewSender(notify.SenderOptions{
		Hop:   relay.New(hopAddr, "gw.corp.example", 10*time.Second, relay.TLSNone, nil),
		Audit: rec, Ring: ring, Dir: filepath.Join(dir, "notify"),
		RetryBase: 50 * time.Millisecond, RetryMax: 200 * time.Millisecond, Poll: 100 * time.Millisecond,
		Logger: quietLog, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sender.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &notify.Service{Composer: composer, Sender: sender, Logger: quietLog}
}

// twin starts a second link server over the same store, keys and
// notifier: another instance behind the same load balancer.
func (h *harness) twin() *httptest.Server {
	h.t.Helper()
	s, err := New(h.opts)
	if err != nil {
		h.t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = s.HTTPServer(nil)
	srv.Start()
	h.t.Cleanup(s.Close)
	h.t.Cleanup(srv.Close)
	return srv
}

// verifiedMessage is a message with link.verify: recipient-code, one file
// and its link, and a message page token.
type verifiedMessage struct {
	msg       store.Message
	link      testLink
	pageToken string
	content   []byte
}

func (h *harness) addVerified(name string, recipients ...string) verifiedMessage {
	h.t.Helper()
	now := h.clock.Now()
	content := testContent(4096)
	fileID := store.NewID()
	info, err := h.blobs.Put(fileID, bytes.NewReader(content))
	if err != nil {
		h.t.Fatal(err)
	}
	token, tokenHash, err := store.NewToken()
	if err != nil {
		h.t.Fatal(err)
	}
	pageToken, pageHash, err := store.NewToken()
	if err != nil {
		h.t.Fatal(err)
	}
	msg := store.Message{
		ID:            store.NewID(),
		MessageID:     "<" + store.NewID() + "@corp.example>",
		Sender:        "alice@corp.example",
		Recipients:    recipients,
		ClientAddr:    "192.0.2.1",
		CreatedAt:     now,
		Subject:       "Quarterly report",
		Lang:          "en",
		Verify:        store.VerifyRecipientCode,
		PageTokenHash: pageHash,
	}
	file := store.File{ID: fileID, MessageID: msg.ID, Name: name, ContentType: "application/pdf",
		Size: info.Size, SHA256: info.SHA256, KeyID: info.KeyID, CreatedAt: now, ExpiresAt: now.Add(7 * 24 * time.Hour)}
	link := store.Link{ID: store.NewID(), FileID: fileID, TokenHash: tokenHash, CreatedAt: now, ExpiresAt: file.ExpiresAt}
	if err := h.store.CreateMessage(context.Background(), msg, []store.File{file}, []store.Link{link}); err != nil {
		h.t.Fatal(err)
	}
	return verifiedMessage{msg: msg, link: testLink{token: token, id: link.ID, file: file}, pageToken: pageToken, content: content}
}

// postForm sends a form as a browser would (same-origin).
func postForm(t testing.TB, c *http.Client, base, action string, vals url.Values) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+action, strings.NewReader(vals.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

var verifyFormRE = regexp.MustCompile(`<form method="post" action="([^"]*)">\s*<input type="hidden" name="csrf" value="([^"]*)">\s*<input type="hidden" name="op" value="([a-z]+)">`)

// verifyForm is one verification form of a page.
type verifyForm struct{ action, csrf string }

// verifyForms returns a page's verification forms by op.
func verifyForms(t testing.TB, body []byte) map[string]verifyForm {
	t.Helper()
	out := map[string]verifyForm{}
	for _, m := range verifyFormRE.FindAllSubmatch(body, -1) {
		out[string(m[3])] = verifyForm{action: string(m[1]), csrf: string(m[2])}
	}
	if len(out) == 0 {
		t.Fatalf("no verification form in %s", body)
	}
	return out
}

// addressForm presses Download on the landing page without a session and
// returns the address form the server answers with.
func (h *harness) addressForm(base string, c *http.Client, token string) verifyForm {
	h.t.Helper()
	resp, body := h.do(c, http.MethodGet, "/d/"+token, nil, nil)
	mustStatus(h.t, resp, http.StatusOK)
	a, f := formRE.FindSubmatch(body), csrfRE.FindSubmatch(body)
	if a == nil || f == nil {
		h.t.Fatalf("landing: no form in %s", body)
	}
	resp, body = postForm(h.t, c, base, string(a[1]), url.Values{csrfField: {string(f[1])}})
	if resp.StatusCode != http.StatusForbidden {
		h.t.Fatalf("Download without a session: status %d, want 403 with the address form; body %s", resp.StatusCode, body)
	}
	if !bytes.Contains(body, []byte(`<input type="email"`)) {
		h.t.Fatalf("Download without a session: no address field in %s", body)
	}
	return verifyForms(h.t, body)["send"]
}

// sendCode submits an address; it returns the answer.
func sendCode(t testing.TB, c *http.Client, base string, f verifyForm, email string) (*http.Response, []byte) {
	t.Helper()
	return postForm(t, c, base, f.action, url.Values{csrfField: {f.csrf}, "op": {"send"}, "email": {email}})
}

// enterCode submits a code for an address.
func enterCode(t testing.TB, c *http.Client, base string, f verifyForm, email, code string) (*http.Response, []byte) {
	t.Helper()
	return postForm(t, c, base, f.action, url.Values{csrfField: {f.csrf}, "op": {"code"}, "email": {email}, "code": {code}})
}

var codeRE = regexp.MustCompile(`(?m)^\s+(\d{8})\s*$`)

// mailsTo returns the messages the next hop accepted for rcpt.
func (v *verifyRig) mailsTo(rcpt string) []smtptest.Message {
	var out []smtptest.Message
	for _, m := range v.hop.Messages() {
		for _, to := range m.To {
			if to == rcpt {
				out = append(out, m)
			}
		}
	}
	return out
}

// waitCode waits until rcpt has received n code mails and returns the
// code of the last one, read from its text/plain part.
func (v *verifyRig) waitCode(rcpt string, n int) string {
	v.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for len(v.mailsTo(rcpt)) < n {
		if time.Now().After(deadline) {
			var types []string
			for _, e := range v.events.all() {
				types = append(types, string(e.Type)+"("+e.Reason+" "+e.Detail+")")
			}
			v.t.Fatalf("timed out waiting for code mail %d to %s (hop has %d messages); events %v; log %s", n, rcpt, len(v.hop.Messages()), types, v.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	mails := v.mailsTo(rcpt)
	return mailCode(v.t, mails[len(mails)-1].Data)
}

// mailCode reads the code out of a code mail's text/plain part.
func mailCode(t testing.TB, raw []byte) string {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("read code mail: %v", err)
	}
	var code string
	err = e.Walk(func(_ []int, part *message.Entity, err error) error {
		if err != nil {
			return err
		}
		if ct, _, _ := part.Header.ContentType(); ct != "text/plain" {
			return nil
		}
		b, err := io.ReadAll(part.Body)
		if err != nil {
			return err
		}
		if m := codeRE.FindSubmatch(b); m != nil {
			code = string(m[1])
		}
		return nil
	})
	if err != nil || code == "" {
		t.Fatalf("no code in mail (%v):\n%s", err, raw)
	}
	return code
}

// waitEvent waits for an event of typ matching f.
func (h *harness) waitEvent(typ audit.EventType, f func(audit.Event) bool) audit.Event {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, e := range h.events.ofType(typ) {
			if f(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for a %s event; have %+v", typ, h.events.all())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sessionCookie returns the Set-Cookie of a verification session, or nil.
func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, sessionCookiePfx) {
			return c
		}
	}
	return nil
}

// httptestRequest builds a request as the mux hands it to a handler, with
// the {token} path value set.
func httptestRequest(t *testing.T, method, path, token string) *http.Request {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.SetPathValue("token", token)
	return req
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
