package quarantine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset"
	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/store"
)

type loggedEvent struct {
	Type       string   `json:"type"`
	Actor      string   `json:"actor"`
	MessageID  string   `json:"message_id"`
	Sender     string   `json:"sender"`
	Recipients []string `json:"recipients"`
	Reason     string   `json:"reason"`
	Reply      string   `json:"reply"`
	Detail     string   `json:"detail"`
}

// events returns the audit log's events of the given types (all when none).
func (e *env) events(t *testing.T, types ...audit.EventType) []loggedEvent {
	t.Helper()
	var buf bytes.Buffer
	if err := e.log.Export(context.Background(), audit.Query{}, &buf, audit.FormatJSONL, false); err != nil {
		t.Fatal(err)
	}
	var out []loggedEvent
	dec := json.NewDecoder(&buf)
	for {
		var ev loggedEvent
		if err := dec.Decode(&ev); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if len(types) == 0 || slices.Contains(types, audit.EventType(ev.Type)) {
			out = append(out, ev)
		}
	}
	return out
}

// runSender sends the notifier's queue in the background until the test
// ends.
func (e *env) runSender(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.notify.Sender.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// dsns waits until the next hop got n mails with the null sender (DSNs)
// and returns them.
func (e *env) dsns(t *testing.T, n int) []smtptest.Message {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got []smtptest.Message
		for _, m := range e.next.Messages() {
			if m.From == "" {
				got = append(got, m)
			}
		}
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d DSNs after 30 s, want %d", len(got), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// delivered returns the mails the next hop got from the original sender.
func (e *env) delivered() []smtptest.Message {
	var got []smtptest.Message
	for _, m := range e.next.Messages() {
		if m.From != "" {
			got = append(got, m)
		}
	}
	return got
}

// report is a parsed multipart/report: the body of each part by type.
type report struct {
	contentType string
	reportType  string
	parts       map[string]string // text/plain, message/delivery-status, text/rfc822-headers
}

func parseReport(t *testing.T, raw []byte) report {
	t.Helper()
	ent, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("DSN: %v", err)
	}
	r := report{parts: map[string]string{}}
	var params map[string]string
	r.contentType, params, _ = ent.Header.ContentType()
	r.reportType = params["report-type"]
	err = ent.Walk(func(_ []int, p *message.Entity, err error) error {
		if err != nil {
			return err
		}
		ct, _, _ := p.Header.ContentType()
		if strings.HasPrefix(ct, "multipart/") {
			return nil
		}
		body, err := io.ReadAll(p.Body)
		if err != nil {
			return err
		}
		if _, seen := r.parts[ct]; !seen {
			r.parts[ct] = string(body)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("DSN parts: %v", err)
	}
	return r
}

var (
	unknownUser = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	mailboxBusy = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: "Mailbox busy, try later"}
)

// threeRecipients is held for ok@ (accepted), reject-me@ (550 5.1.1) and
// later@ (450 until the next hop recovers).
func threeRecipients(id string, action policies.Action) Item {
	it := item(id, action)
	// The envelope sender differs from the header's From: a DSN goes to
	// the envelope only.
	it.From = "bounces+alice@example.com"
	it.To = []string{"ok@example.net", "reject-me@example.org", "later@example.com"}
	return it
}

// TestReleasePerRecipient is issue 15 part 2: a release that the next hop
// refuses for one recipient still delivers to the others; the sender gets
// a DSN with the next hop's reply; a deferred recipient stays held and is
// delivered when the next hop takes it.
func TestReleasePerRecipient(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.runSender(t)
		m := e.open(t)
		ctx := context.Background()
		id := store.NewID()
		if _, err := m.Hold(ctx, threeRecipients(id, policies.Quarantine), bytes.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
		e.next.SetBehaviour(smtptest.Behaviour{RejectRcpt: map[string]*smtp.SMTPError{
			"reject-me@example.org": unknownUser, "later@example.com": mailboxBusy}})

		res, err := m.Release(ctx, id, "admin:ops")
		if err != nil {
			t.Fatalf("release: %v", err)
		}
		if !slices.Equal(res.Delivered, []string{"ok@example.net"}) || !slices.Equal(res.Bounced, []string{"reject-me@example.org"}) ||
			!slices.Equal(res.Pending, []string{"later@example.com"}) {
			t.Errorf("result: delivered %v bounced %v pending %v", res.Delivered, res.Bounced, res.Pending)
		}
		got := e.delivered()
		if len(got) != 1 || !slices.Equal(got[0].To, []string{"ok@example.net"}) || !bytes.Equal(got[0].Data, testMsg) {
			t.Fatalf("next hop got %+v, want the message for ok@ only", got)
		}

		// The sender hears about reject-me@, with the next hop's reply.
		dsn := e.dsns(t, 1)[0]
		if !slices.Equal(dsn.To, []string{"bounces+alice@example.com"}) {
			t.Errorf("DSN to %v, want the envelope sender (not the header's From)", dsn.To)
		}
		rep := parseReport(t, dsn.Data)
		if rep.contentType != "multipart/report" || rep.reportType != "delivery-status" {
			t.Errorf("DSN is %s; report-type=%s", rep.contentType, rep.reportType)
		}
		status := rep.parts["message/delivery-status"]
		for _, want := range []string{"Final-Recipient: rfc822; reject-me@example.org", "Action: failed",
			"Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1 No such user here"} {
			if !strings.Contains(status, want) {
				t.Errorf("delivery-status lacks %q:\n%s", want, status)
			}
		}
		if strings.Contains(status, "ok@example.net") || strings.Contains(status, "later@example.com") {
			t.Errorf("delivery-status names a recipient that was not refused:\n%s", status)
		}
		if h := rep.parts["text/rfc822-headers"]; !strings.Contains(h, "Subject: "+secret) || strings.Contains(h, "body "+secret) {
			t.Errorf("original headers part: %q", h)
		}

		// Only later@ is left, retried after a back-off.
		it, err := m.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(it.To, []string{"later@example.com"}) || it.Attempts != 1 ||
			!it.ReleaseAt.Equal(e.clock.Now().Add(30*time.Second)) || it.Failures["later@example.com"].Reply != "450 4.2.1 Mailbox busy, try later" {
			t.Errorf("left held: %+v", it)
		}
		if n, _ := m.ReleaseDue(ctx); n != 0 {
			t.Error("retried during the back-off")
		}

		// Per-recipient audit.
		evs := e.events(t, audit.TypeMailReleased, audit.TypeMailBounced, audit.TypeMailDeferred)
		byType := map[audit.EventType][]loggedEvent{}
		for _, ev := range evs {
			byType[audit.EventType(ev.Type)] = append(byType[audit.EventType(ev.Type)], ev)
		}
		if r := byType[audit.TypeMailReleased]; len(r) != 1 || !slices.Equal(r[0].Recipients, []string{"ok@example.net"}) ||
			r[0].Actor != "admin:ops" || r[0].Reason != ReasonAdmin || !strings.HasPrefix(r[0].Reply, "250 ") {
			t.Errorf("mail.released: %+v", r)
		}
		if b := byType[audit.TypeMailBounced]; len(b) != 1 || !slices.Equal(b[0].Recipients, []string{"reject-me@example.org"}) ||
			b[0].Reply != "550 5.1.1 No such user here" || b[0].Reason != ReasonRefused || !strings.Contains(b[0].Detail, "dsn=queued") {
			t.Errorf("mail.bounced: %+v", b)
		}
		if d := byType[audit.TypeMailDeferred]; len(d) != 1 || !slices.Equal(d[0].Recipients, []string{"later@example.com"}) ||
			d[0].Reply != "450 4.2.1 Mailbox busy, try later" {
			t.Errorf("mail.deferred: %+v", d)
		}

		// The next hop recovers: later@ gets it on the next try.
		e.next.SetBehaviour(smtptest.Behaviour{})
		e.clock.Add(30 * time.Second)
		if n, err := m.ReleaseDue(ctx); err != nil || n != 1 {
			t.Fatalf("retry: %d, %v", n, err)
		}
		got = e.delivered()
		if len(got) != 2 || !slices.Equal(got[1].To, []string{"later@example.com"}) {
			t.Fatalf("after the retry the next hop has %+v", got)
		}
		if _, err := m.Get(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("item still held after every recipient had an outcome: %v", err)
		}
		rel := e.events(t, audit.TypeMailReleased)
		if len(rel) != 2 || !slices.Equal(rel[1].Recipients, []string{"later@example.com"}) || rel[1].Actor != audit.ActorSystem ||
			rel[1].Reason != ReasonRetry || !strings.Contains(rel[1].Detail, "released_by=admin:ops") {
			t.Errorf("retry's mail.released: %+v", rel)
		}
		if n := countBlobs(t, m.dir); n != 0 {
			t.Errorf("%d blobs left", n)
		}
		if len(e.dsns(t, 1)) != 1 {
			t.Error("more than one DSN")
		}
	})
}

// TestReleasePermanentRefusalAtDataBouncesEveryone: a 554 at the end of
// DATA refuses the message for every accepted recipient.
func TestReleasePermanentRefusalAtDataBouncesEveryone(t *testing.T) {
	e := newEnv(t)
	m := e.open(t)
	ctx := context.Background()
	id := store.NewID()
	if _, err := m.Hold(ctx, item(id, policies.Quarantine), bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	e.next.SetBehaviour(smtptest.Behaviour{DataReply: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Content refused"}})
	res, err := m.Release(ctx, id, "admin:ops")
	if err != nil || len(res.Bounced) != 2 || len(res.Delivered) != 0 {
		t.Fatalf("release: %+v, %v", res, err)
	}
	e.next.SetBehaviour(smtptest.Behaviour{})
	e.runSender(t) // the DSN goes out once the next hop takes mail again
	status := parseReport(t, e.dsns(t, 1)[0].Data).parts["message/delivery-status"]
	for _, want := range []string{"b@example.net", "c@example.org", "smtp; 554 5.7.1 Content refused"} {
		if !strings.Contains(status, want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, status)
		}
	}
	if n := len(e.events(t, audit.TypeMailBounced)); n != 2 {
		t.Errorf("%d mail.bounced, want one per recipient", n)
	}
}

// TestReleaseGivesUpAfterMaxRetryAge: a next hop that stays down is
// retried with a back-off until max_retry_age, then the sender gets a DSN.
func TestReleaseGivesUpAfterMaxRetryAge(t *testing.T) {
	e := newEnv(t)
	e.maxRetryAge = 10 * time.Minute
	e.runSender(t) // the notifier's own next hop is up
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	m := e.openWith(t, hopAt(dead))
	ctx := context.Background()
	id := store.NewID()
	if _, err := m.Hold(ctx, item(id, policies.Hold), bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	start := e.clock.Now().Add(time.Hour)
	e.clock.Add(time.Hour)
	attempts := 0
	for i := 0; i < 100; i++ {
		if _, err := m.ReleaseDue(ctx); err != nil {
			t.Fatal(err)
		}
		it, err := m.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		attempts = it.Attempts
		if it.ReleaseAt.After(start.Add(e.maxRetryAge)) {
			t.Fatalf("next attempt %v after the give-up time %v", it.ReleaseAt, start.Add(e.maxRetryAge))
		}
		if !it.FirstFailedAt.Equal(start) {
			t.Fatalf("first failure %v, want %v", it.FirstFailedAt, start)
		}
		e.clock.Add(it.ReleaseAt.Sub(e.clock.Now()))
	}
	if _, err := m.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("still held after max_retry_age: %v", err)
	}
	// 30s, 1m, 2m, 4m back-offs fit 10 min; the last attempt is at 10 min.
	if attempts < 4 || !e.clock.Now().Equal(start.Add(e.maxRetryAge)) {
		t.Errorf("%d attempts, given up at %v (want %v)", attempts, e.clock.Now(), start.Add(e.maxRetryAge))
	}
	rep := parseReport(t, e.dsns(t, 1)[0].Data)
	status := rep.parts["message/delivery-status"]
	for _, want := range []string{"Final-Recipient: rfc822; b@example.net", "Final-Recipient: rfc822; c@example.org",
		"Action: failed", "Status: 4.4.1"} {
		if !strings.Contains(status, want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, status)
		}
	}
	b := e.events(t, audit.TypeMailBounced)
	if len(b) != 2 || b[0].Reason != "gave up after 10m0s" || b[0].Actor != audit.ActorSystem {
		t.Errorf("mail.bounced: %+v", b)
	}
	if len(e.delivered()) != 0 {
		t.Error("delivered through a dead next hop?")
	}
}

// TestRejectTellsTheSenderDeleteDoesNot is issue 12 part 4: a rejected
// held message produces a DSN with the reason; an admin's deletion does
// not.
func TestRejectTellsTheSenderDeleteDoesNot(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.open(t)
		ctx := context.Background()
		deleted, rejected := store.NewID(), store.NewID()
		for _, id := range []string{deleted, rejected} {
			if _, err := m.Hold(ctx, item(id, policies.Quarantine), bytes.NewReader(testMsg)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := m.Delete(ctx, deleted, "admin:ops"); err != nil {
			t.Fatal(err)
		}
		if n, err := e.notify.Sender.Pending(); err != nil || n != 0 {
			t.Fatalf("after a deletion %d notices queued (%v), want none", n, err)
		}
		if _, err := m.Reject(ctx, rejected, "approver:boss@corp.example", "  "); !errors.Is(err, ErrNoReason) {
			t.Errorf("reject without a reason: %v", err)
		}
		if _, err := m.Reject(ctx, store.NewID(), "approver:boss@corp.example", "no"); !errors.Is(err, ErrNotFound) {
			t.Errorf("reject of an unknown ID: %v", err)
		}
		res, err := m.Reject(ctx, rejected, "approver:boss@corp.example", "Customer data must not leave the company")
		if err != nil || len(res.Bounced) != 2 {
			t.Fatalf("reject: %+v, %v", res, err)
		}
		if _, err := m.Get(ctx, rejected); !errors.Is(err, ErrNotFound) {
			t.Errorf("rejected message still held: %v", err)
		}
		if n, err := e.notify.Sender.Pending(); err != nil || n != 1 {
			t.Fatalf("after a rejection %d notices queued (%v), want the DSN", n, err)
		}
		e.runSender(t)
		rep := parseReport(t, e.dsns(t, 1)[0].Data)
		if !strings.Contains(rep.parts["text/plain"], "Customer data must not leave the company") {
			t.Errorf("the DSN does not say why:\n%s", rep.parts["text/plain"])
		}
		if s := rep.parts["message/delivery-status"]; !strings.Contains(s, "Status: 5.7.1") || !strings.Contains(s, "c@example.org") {
			t.Errorf("delivery-status:\n%s", s)
		}
		rj := e.events(t, audit.TypeMailRejected)
		if len(rj) != 1 || rj[0].Actor != "approver:boss@corp.example" || rj[0].Reason != "Customer data must not leave the company" ||
			rj[0].MessageID != rejected || len(rj[0].Recipients) != 2 || !strings.Contains(rj[0].Detail, "dsn=queued") {
			t.Errorf("mail.rejected: %+v", rj)
		}
		if len(e.delivered()) != 0 {
			t.Error("a rejected or deleted message was delivered")
		}
	})
}

// TestPurgeAfterRetention: a quarantined message nobody decided on is
// purged after the retention, audited, and the sender told; a held one
// waiting for its release time is not.
func TestPurgeAfterRetention(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.retention = 48 * time.Hour
		m := e.open(t)
		ctx := context.Background()
		old, held := store.NewID(), store.NewID()
		if _, err := m.Hold(ctx, item(old, policies.Quarantine), bytes.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
		e.clock.Add(time.Hour)
		young := store.NewID()
		if _, err := m.Hold(ctx, item(young, policies.Quarantine), bytes.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Hold(ctx, item(held, policies.Hold), bytes.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
		e.clock.Add(47 * time.Hour) // old is exactly 48h old: kept
		if n, err := m.PurgeExpired(ctx); err != nil || n != 0 {
			t.Fatalf("at the retention: purged %d, %v", n, err)
		}
		e.clock.Add(time.Second)
		if n, err := m.PurgeExpired(ctx); err != nil || n != 1 {
			t.Fatalf("after the retention: purged %d, %v", n, err)
		}
		list, _ := m.List(ctx)
		var ids []string
		for _, it := range list {
			ids = append(ids, it.ID)
		}
		if slices.Contains(ids, old) || !slices.Contains(ids, young) || !slices.Contains(ids, held) {
			t.Errorf("left: %v", ids)
		}
		p := e.events(t, audit.TypeMailPurged)
		if len(p) != 1 || p[0].MessageID != old || p[0].Actor != audit.ActorSystem || p[0].Reason != ReasonRetention {
			t.Errorf("mail.purged: %+v", p)
		}
		e.runSender(t)
		rep := parseReport(t, e.dsns(t, 1)[0].Data)
		if !strings.Contains(rep.parts["text/plain"], "not released within 48h0m0s") {
			t.Errorf("DSN text:\n%s", rep.parts["text/plain"])
		}
	})
}

// TestNothingMovesWhileTheBackendRefuses: with the store's guard refusing
// (backend unreachable, or a lost dataset), nothing is held, released or
// purged, and the held blobs are not taken for leftovers.
func TestNothingMovesWhileTheBackendRefuses(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.open(t)
		ctx := context.Background()
		id := store.NewID()
		if _, err := m.Hold(ctx, item(id, policies.Hold), bytes.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
		lost := errors.New("dataset lost (test)")
		refusing := func() error { return lost }
		o := Options{DB: e.st.DB(), Dir: m.dir, Ring: e.ring, Audit: e.rec, Hop: e.hop, Deliverer: rawDeliverer{},
			Now: e.clock.Now, Logger: discardLog(), Notify: e.notify, Usable: refusing, Retention: time.Hour}
		if e.redis != nil {
			o.DB, o.Redis, o.RedisPrefix = nil, e.redis, "other-dataset:" // empty: every blob looks orphaned
		}
		r, err := Open(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if n := countBlobs(t, m.dir); n != 1 {
			t.Fatalf("%d blobs after opening on a refusing backend, want the held one kept", n)
		}
		e.clock.Add(1000 * time.Hour)
		if _, err := r.Hold(ctx, item(store.NewID(), policies.Quarantine), bytes.NewReader(testMsg)); !errors.Is(err, lost) {
			t.Errorf("Hold while refusing: %v", err)
		}
		if _, err := r.ReleaseDue(ctx); !errors.Is(err, lost) {
			t.Errorf("ReleaseDue while refusing: %v", err)
		}
		if _, err := r.PurgeExpired(ctx); !errors.Is(err, lost) {
			t.Errorf("PurgeExpired while refusing: %v", err)
		}
		for name, call := range map[string]func() error{
			"Release": func() error { _, err := r.Release(ctx, id, "admin:ops"); return err },
			"Delete":  func() error { _, err := r.Delete(ctx, id, "admin:ops"); return err },
			"Reject":  func() error { _, err := r.Reject(ctx, id, "admin:ops", "no"); return err },
			"List":    func() error { _, err := r.List(ctx); return err },
		} {
			if err := call(); !errors.Is(err, lost) {
				t.Errorf("%s while refusing: %v", name, err)
			}
		}
		if len(e.next.Messages()) != 0 {
			t.Error("something was sent while the backend refused")
		}
		if _, err := m.Get(ctx, id); err != nil {
			t.Errorf("held message lost: %v", err)
		}
	})
}

// TestBounceOfNullSenderSendsNoDSN: mail from <> never gets a DSN (no
// loops); the bounce is still audited, saying so.
func TestBounceOfNullSenderSendsNoDSN(t *testing.T) {
	e := newEnv(t)
	m := e.open(t)
	ctx := context.Background()
	id := store.NewID()
	it := item(id, policies.Quarantine)
	it.From = ""
	if _, err := m.Hold(ctx, it, bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	e.next.SetBehaviour(smtptest.Behaviour{RejectRcpt: map[string]*smtp.SMTPError{"c@example.org": unknownUser}})
	res, err := m.Release(ctx, id, "admin:ops")
	if err != nil || len(res.Delivered) != 1 || len(res.Bounced) != 1 {
		t.Fatalf("release: %+v, %v", res, err)
	}
	if n, err := e.notify.Sender.Pending(); err != nil || n != 0 {
		t.Errorf("%d notices queued for a null sender (%v)", n, err)
	}
	b := e.events(t, audit.TypeMailBounced)
	if len(b) != 1 || !strings.Contains(b[0].Detail, "dsn=none (null sender)") {
		t.Errorf("mail.bounced: %+v", b)
	}
}

// TestDSNThatCannotBeQueuedDoesNotBlockTheRelease: the notifier's queue is
// full; the release still delivers and bounces, and the bounce's audit
// event says the DSN failed (the notifier records notice.failed).
func TestDSNThatCannotBeQueuedDoesNotBlockTheRelease(t *testing.T) {
	e := newEnv(t)
	sender, err := notify.NewSender(notify.SenderOptions{Hop: e.hop, Audit: e.log, Ring: e.ring,
		Dir: filepath.Join(e.dir, "notify-full"), MaxQueue: 1, Logger: discardLog()})
	if err != nil {
		t.Fatal(err)
	}
	e.notify = &notify.Service{Composer: e.notify.Composer, Sender: sender, Logger: discardLog()}
	m := e.open(t)
	ctx := context.Background()
	first, second := store.NewID(), store.NewID()
	for _, id := range []string{first, second} {
		if _, err := m.Hold(ctx, item(id, policies.Quarantine), bytes.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Reject(ctx, first, "admin:ops", "fills the queue"); err != nil {
		t.Fatal(err)
	}
	e.next.SetBehaviour(smtptest.Behaviour{RejectRcpt: map[string]*smtp.SMTPError{"c@example.org": unknownUser}})
	res, err := m.Release(ctx, second, "admin:ops")
	if err != nil || len(res.Delivered) != 1 || len(res.Bounced) != 1 {
		t.Fatalf("release with a full notice queue: %+v, %v", res, err)
	}
	if _, err := m.Get(ctx, second); !errors.Is(err, ErrNotFound) {
		t.Errorf("still held: %v", err)
	}
	b := e.events(t, audit.TypeMailBounced)
	if len(b) != 1 || !strings.Contains(b[0].Detail, "dsn=failed") {
		t.Errorf("mail.bounced: %+v", b)
	}
}

// TestConcurrentReleasesDeliverOnce: 30 releases of one message at once,
// spread over two instances (Redis) or two processes' Managers (SQLite):
// it goes out once; the others are told it is busy or gone.
func TestConcurrentReleasesDeliverOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.next.SetBehaviour(smtptest.Behaviour{HangAtDataEnd: 100 * time.Millisecond})
		managers := []*Manager{e.open(t), e.open(t)}
		ctx := context.Background()
		id := store.NewID()
		if _, err := managers[0].Hold(ctx, item(id, policies.Quarantine), bytes.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 30)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = managers[i%2].Release(ctx, id, "admin:ops")
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrBusy), errors.Is(err, ErrNotFound):
			default:
				t.Errorf("release: %v", err)
			}
		}
		if ok != 1 || len(e.delivered()) != 1 || len(e.events(t, audit.TypeMailReleased)) != 1 {
			t.Errorf("%d releases succeeded, next hop got %d, %d mail.released; want 1 each",
				ok, len(e.delivered()), len(e.events(t, audit.TypeMailReleased)))
		}
	})
}
