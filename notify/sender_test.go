package notify

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/vault"
)

// rig is a queue directory, a key ring, a real audit log and a composer.
type rig struct {
	dir  string
	ring *vault.KeyRing
	log  audit.Log
	c    *Composer
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	ring := newRing(t, dir)
	return &rig{dir: dir, ring: ring, log: newAudit(t), c: newComposer(t, "both", ring)}
}

func hopTo(addr string) relay.Hop {
	return relay.New(addr, "gw.corp.example", 10*time.Second, relay.TLSNone, nil)
}

// sender starts a Sender with quick retries; it stops when the test ends
// (or earlier, through the returned stop).
func (r *rig) sender(t *testing.T, hop relay.Hop, o SenderOptions) (*Sender, func()) {
	t.Helper()
	o.Hop, o.Audit, o.Ring, o.Dir = hop, r.log, r.ring, filepath.Join(r.dir, "notify")
	o.Logger = quiet
	if o.RetryBase == 0 {
		o.RetryBase = 50 * time.Millisecond
	}
	if o.RetryMax == 0 {
		o.RetryMax = 200 * time.Millisecond
	}
	if o.Poll == 0 {
		o.Poll = 100 * time.Millisecond
	}
	s, err := NewSender(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return s, stop
}

func (r *rig) code(t *testing.T, to ...string) *Mail {
	t.Helper()
	m, err := r.c.Compose(Notice{Kind: "code", To: to, Data: codeData, About: "msg-1"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// waitFor polls cond with a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deadAddr is a 127.0.0.1 port nobody listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func queueEntries(t *testing.T, s *Sender) []entry {
	t.Helper()
	es, err := s.entries()
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func TestSendDelivered(t *testing.T) {
	tests := []struct {
		name       string
		returnPath string
		dsn        bool
		wantFrom   string
	}{
		{"null return path by default", "", false, ""},
		{"configured return path", "bounces@corp.example", false, "bounces@corp.example"},
		{"DSN always null", "bounces@corp.example", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			hop := smtptest.NewServer(t, smtptest.Behaviour{})
			s, _ := r.sender(t, hopTo(hop.Addr), SenderOptions{ReturnPath: tt.returnPath})
			m := r.code(t, "bob@example.net", "carol@example.org")
			if tt.dsn {
				var err error
				m, err = r.c.DSN(DSN{To: "alice@corp.example", About: "msg-1",
					Recipients:      []DSNRecipient{{Address: "bob@example.net", Action: ActionFailed}},
					OriginalHeaders: strings.NewReader(originalHeaders)})
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Enqueue(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "delivery", func() bool { return len(hop.Messages()) == 1 })
			got := hop.Messages()[0]
			if got.From != tt.wantFrom {
				t.Errorf("MAIL FROM:<%s>, want <%s>", got.From, tt.wantFrom)
			}
			if strings.Join(got.To, ",") != strings.Join(m.To, ",") {
				t.Errorf("RCPT TO %v, want %v", got.To, m.To)
			}
			checkWire(t, got.Data)
			top := parse(t, got.Data)
			if id := top.header.Get("Message-Id"); id != "<"+m.MessageID+">" {
				t.Errorf("delivered Message-Id %q, want <%s>", id, m.MessageID)
			}
			waitFor(t, "notice.sent", func() bool { return len(auditEvents(t, r.log, audit.TypeNoticeSent)) == 1 })
			e := auditEvents(t, r.log, audit.TypeNoticeSent)[0]
			if e.HeaderID != m.MessageID || e.MessageID != "msg-1" || e.Sender != tt.wantFrom ||
				strings.Join(e.Recipients, ",") != strings.Join(m.To, ",") || !strings.HasPrefix(e.Reply, "250 ") ||
				!strings.Contains(e.Detail, "kind="+m.Kind) || !strings.Contains(e.Detail, "attempt=1") || e.Actor != "system" {
				t.Errorf("notice.sent = %+v", e)
			}
			waitFor(t, "empty queue", func() bool { return len(queueEntries(t, s)) == 0 })
			if n := len(auditEvents(t, r.log, audit.TypeNoticeFailed)); n != 0 {
				t.Errorf("%d notice.failed events", n)
			}
		})
	}
}

// TestRetryAfterTemporaryFailure: the next hop answers 451, then 250: the
// notice is retried and delivered once, and audited as sent.
func TestRetryAfterTemporaryFailure(t *testing.T) {
	r := newRig(t)
	hop := smtptest.NewServer(t, smtptest.Behaviour{DataReply: &smtp.SMTPError{Code: 451,
		EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}})
	s, _ := r.sender(t, hopTo(hop.Addr), SenderOptions{})
	m := r.code(t, "bob@example.net")
	if err := s.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed first attempt", func() bool {
		es := queueEntries(t, s)
		return len(es) == 1 && es[0].attempt >= 1
	})
	if len(hop.Messages()) != 0 {
		t.Fatalf("delivered despite 451")
	}
	hop.SetBehaviour(smtptest.Behaviour{})
	waitFor(t, "delivery", func() bool { return len(hop.Messages()) == 1 })
	waitFor(t, "notice.sent", func() bool { return len(auditEvents(t, r.log, audit.TypeNoticeSent)) == 1 })
	e := auditEvents(t, r.log, audit.TypeNoticeSent)[0]
	if strings.Contains(e.Detail, "attempt=1") || e.HeaderID != m.MessageID {
		t.Errorf("notice.sent after a retry = %+v (want attempt >= 2)", e)
	}
	waitFor(t, "empty queue", func() bool { return len(queueEntries(t, s)) == 0 })
	time.Sleep(300 * time.Millisecond) // a few more runs: nothing is sent twice
	if n := len(hop.Messages()); n != 1 {
		t.Errorf("delivered %d times", n)
	}
	if n := len(auditEvents(t, r.log, audit.TypeNoticeFailed)); n != 0 {
		t.Errorf("%d notice.failed events", n)
	}
}

// TestNextHopDownForGood: nothing listens; after the notice's age is up it
// is audited as failed, and Enqueue returned at once throughout.
func TestNextHopDownForGood(t *testing.T) {
	r := newRig(t)
	s, _ := r.sender(t, hopTo(deadAddr(t)), SenderOptions{})
	m, err := r.c.Compose(Notice{Kind: "code", To: []string{"bob@example.net"}, Data: codeData,
		About: "msg-2", Expires: time.Now().Add(time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "notice.failed", func() bool { return len(auditEvents(t, r.log, audit.TypeNoticeFailed)) == 1 })
	e := auditEvents(t, r.log, audit.TypeNoticeFailed)[0]
	if !strings.HasPrefix(e.Reason, "gave up after") || e.HeaderID != m.MessageID || e.MessageID != "msg-2" ||
		strings.Join(e.Recipients, ",") != "bob@example.net" ||
		// The reply is the last error when the last attempt gave up; a
		// notice found already expired when due again is given up unsent.
		(e.Reply != "" && !strings.Contains(e.Reply, "dial next hop")) {
		t.Errorf("notice.failed = %+v", e)
	}
	if n := len(queueEntries(t, s)); n != 0 {
		t.Errorf("%d notices left in the queue after giving up", n)
	}
	if n := len(auditEvents(t, r.log, audit.TypeNoticeSent)); n != 0 {
		t.Errorf("%d notice.sent", n)
	}
}

// TestEnqueueNeverWaitsForTheNextHop: a next hop that accepts the
// connection and never answers holds the sender, not the callers.
func TestEnqueueNeverWaitsForTheNextHop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // never greets
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	r := newRig(t)
	hang := relay.New(ln.Addr().String(), "gw.corp.example", time.Hour, relay.TLSNone, nil)
	s, _ := r.sender(t, hang, SenderOptions{})
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 5; i++ {
			if err := s.Enqueue(context.Background(), r.code(t, "bob@example.net")); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Enqueue waited for a next hop that never answers")
	}
	waitFor(t, "the sender to be stuck on the next hop", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(conns) >= 1
	})
	if n := len(queueEntries(t, s)); n != 5 {
		t.Errorf("%d queued, want 5", n)
	}
}

func TestPermanentAndPartialRefusals(t *testing.T) {
	r := newRig(t)
	hop := smtptest.NewServer(t, smtptest.Behaviour{RejectRcpt: map[string]*smtp.SMTPError{
		"gone@example.net":  {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"},
		"later@example.net": {Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "Mailbox busy"},
	}})
	s, _ := r.sender(t, hopTo(hop.Addr), SenderOptions{})
	m := r.code(t, "ok@example.net", "gone@example.net", "later@example.net")
	if err := s.Enqueue(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first delivery", func() bool { return len(hop.Messages()) == 1 })
	if got := hop.Messages()[0].To; strings.Join(got, ",") != "ok@example.net" {
		t.Errorf("first delivery to %v", got)
	}
	waitFor(t, "notice.failed for gone@", func() bool { return len(auditEvents(t, r.log, audit.TypeNoticeFailed)) == 1 })
	f := auditEvents(t, r.log, audit.TypeNoticeFailed)[0]
	if strings.Join(f.Recipients, ",") != "gone@example.net" || f.Reply != "550 5.1.1 No such user" || f.Reason != "refused by next hop" {
		t.Errorf("notice.failed = %+v", f)
	}
	// later@ waits alone in the queue.
	waitFor(t, "a retry for later@ only", func() bool {
		es := queueEntries(t, s)
		return len(es) == 1 && es[0].attempt >= 1
	})
	hop.SetBehaviour(smtptest.Behaviour{})
	waitFor(t, "second delivery", func() bool { return len(hop.Messages()) == 2 })
	waitFor(t, "second notice.sent", func() bool { return len(auditEvents(t, r.log, audit.TypeNoticeSent)) == 2 })
	if got := hop.Messages()[1].To; strings.Join(got, ",") != "later@example.net" {
		t.Errorf("retry went to %v, want later@ only", got)
	}
	sent := auditEvents(t, r.log, audit.TypeNoticeSent)
	if len(sent) != 2 || strings.Join(sent[0].Recipients, ",") != "ok@example.net" ||
		strings.Join(sent[1].Recipients, ",") != "later@example.net" || sent[1].HeaderID != m.MessageID {
		t.Errorf("notice.sent events = %+v", sent)
	}
	waitFor(t, "empty queue", func() bool { return len(queueEntries(t, s)) == 0 })
}

// TestPendingNoticeSurvivesRestart: a notice queued while the next hop is
// down is sent by the next process, which opens the same key ring; with
// either store backend's audit log.
func TestPendingNoticeSurvivesRestart(t *testing.T) {
	for _, backend := range []string{"sqlite", "redis"} {
		t.Run(backend, func(t *testing.T) {
			r := newRig(t)
			if backend == "redis" {
				r.log = newRedisAudit(t)
			}
			s1, stop1 := r.sender(t, hopTo(deadAddr(t)), SenderOptions{})
			m := r.code(t, "bob@example.net")
			if err := s1.Enqueue(context.Background(), m); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "a failed attempt", func() bool {
				es := queueEntries(t, s1)
				return len(es) == 1 && es[0].attempt >= 1 && es[0].state == 'q'
			})
			stop1()

			// A new process: the key ring read from disk again, a live next hop.
			r.ring = newRing(t, r.dir)
			hop := smtptest.NewServer(t, smtptest.Behaviour{})
			r.sender(t, hopTo(hop.Addr), SenderOptions{})
			waitFor(t, "delivery after restart", func() bool { return len(hop.Messages()) == 1 })
			h := parse(t, hop.Messages()[0].Data).header
			if id := h.Get("Message-Id"); id != "<"+m.MessageID+">" {
				t.Errorf("delivered %s, want <%s>", id, m.MessageID)
			}
			waitFor(t, "notice.sent", func() bool { return len(auditEvents(t, r.log, audit.TypeNoticeSent)) == 1 })
			if e := auditEvents(t, r.log, audit.TypeNoticeSent)[0]; e.HeaderID != m.MessageID || strings.HasSuffix(e.Detail, "attempt=1") {
				t.Errorf("notice.sent = %+v", e)
			}
		})
	}
}

// TestCrashedClaimIsTakenAgain: a notice claimed by a process that died
// mid-send is sent once its claim lease has passed.
func TestCrashedClaimIsTakenAgain(t *testing.T) {
	r := newRig(t)
	// Queue without running a sender, then fake the dead claim.
	s, err := NewSender(SenderOptions{Hop: hopTo(deadAddr(t)), Audit: r.log, Ring: r.ring, Dir: filepath.Join(r.dir, "notify")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(context.Background(), r.code(t, "bob@example.net")); err != nil {
		t.Fatal(err)
	}
	es := queueEntries(t, s)
	claimed := entry{state: 'c', id: es[0].id, at: time.Now().Add(-20 * time.Second)}
	if err := os.Rename(s.path(es[0]), s.path(claimed)); err != nil {
		t.Fatal(err)
	}
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	r.sender(t, hopTo(hop.Addr), SenderOptions{ClaimLease: time.Hour})
	time.Sleep(300 * time.Millisecond)
	if len(hop.Messages()) != 0 {
		t.Fatalf("a claim within its lease was taken")
	}
	r.sender(t, hopTo(hop.Addr), SenderOptions{ClaimLease: 10 * time.Second})
	waitFor(t, "delivery of the expired claim", func() bool { return len(hop.Messages()) == 1 })
}

// TestTwoSendersShareAQueue: instances sharing storage.dir send each
// notice once.
func TestTwoSendersShareAQueue(t *testing.T) {
	r := newRig(t)
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	a, _ := r.sender(t, hopTo(hop.Addr), SenderOptions{})
	b, _ := r.sender(t, hopTo(hop.Addr), SenderOptions{})
	ids := map[string]bool{}
	for i := 0; i < 20; i++ {
		m := r.code(t, "bob@example.net")
		ids["<"+m.MessageID+">"] = true
		s := a
		if i%2 == 1 {
			s = b
		}
		if err := s.Enqueue(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "20 deliveries", func() bool { return len(hop.Messages()) >= 20 })
	waitFor(t, "empty queue", func() bool { return len(queueEntries(t, a)) == 0 })
	time.Sleep(300 * time.Millisecond)
	seen := map[string]int{}
	for _, msg := range hop.Messages() {
		h := parse(t, msg.Data).header
		seen[h.Get("Message-Id")]++
	}
	for id := range ids {
		if seen[id] != 1 {
			t.Errorf("%s delivered %d times", id, seen[id])
		}
	}
	if len(hop.Messages()) != 20 {
		t.Errorf("%d deliveries, want 20", len(hop.Messages()))
	}
}

func TestQueueFull(t *testing.T) {
	r := newRig(t)
	s, err := NewSender(SenderOptions{Hop: hopTo(deadAddr(t)), Audit: r.log, Ring: r.ring,
		Dir: filepath.Join(r.dir, "notify"), MaxQueue: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := s.Enqueue(context.Background(), r.code(t, "bob@example.net")); err != nil {
			t.Fatal(err)
		}
	}
	m := r.code(t, "carol@example.org")
	if err := s.Enqueue(context.Background(), m); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third Enqueue: %v, want ErrQueueFull", err)
	}
	f := auditEvents(t, r.log, audit.TypeNoticeFailed)
	if len(f) != 1 || f[0].Reason != "queue full" || f[0].HeaderID != m.MessageID ||
		strings.Join(f[0].Recipients, ",") != "carol@example.org" {
		t.Errorf("notice.failed = %+v", f)
	}
}

// TestQueueBoundUnderConcurrency: 30 callers at once against a queue of
// 10: exactly 10 are queued, the others refused and audited.
func TestQueueBoundUnderConcurrency(t *testing.T) {
	r := newRig(t)
	s, err := NewSender(SenderOptions{Hop: hopTo(deadAddr(t)), Audit: r.log, Ring: r.ring,
		Dir: filepath.Join(r.dir, "notify"), MaxQueue: 10, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	mails := make([]*Mail, 30)
	for i := range mails {
		mails[i] = r.code(t, "bob@example.net")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, full int
	for _, m := range mails {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Enqueue(context.Background(), m)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrQueueFull):
				full++
			default:
				t.Errorf("Enqueue: %v", err)
			}
		}()
	}
	wg.Wait()
	if ok != 10 || full != 20 {
		t.Errorf("queued %d, refused %d; want 10 and 20", ok, full)
	}
	if n := len(queueEntries(t, s)); n != 10 {
		t.Errorf("%d queue files, want 10", n)
	}
	if n := len(auditEvents(t, r.log, audit.TypeNoticeFailed)); n != 20 {
		t.Errorf("%d notice.failed events, want 20: %+v", n, auditEvents(t, r.log, audit.TypeNoticeFailed))
	}
}

// TestQueueFileIsEncrypted: a queued code is not readable on disk.
func TestQueueFileIsEncrypted(t *testing.T) {
	r := newRig(t)
	s, err := NewSender(SenderOptions{Hop: hopTo(deadAddr(t)), Audit: r.log, Ring: r.ring, Dir: filepath.Join(r.dir, "notify")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(context.Background(), r.code(t, "bob@example.net")); err != nil {
		t.Fatal(err)
	}
	es := queueEntries(t, s)
	if len(es) != 1 {
		t.Fatalf("%d queue files", len(es))
	}
	fi, err := os.Stat(s.path(es[0]))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("queue file mode %04o, want 0600", fi.Mode().Perm())
	}
	b, err := os.ReadFile(s.path(es[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{codeData.Code, "bob@example.net", "Subject", "alice@corp.example"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("queue file shows %q in clear", secret)
		}
	}
	dfi, err := os.Stat(filepath.Join(r.dir, "notify"))
	if err != nil || dfi.Mode().Perm() != 0o700 {
		t.Errorf("queue directory mode %v (%v), want 0700", dfi.Mode().Perm(), err)
	}
}

// TestStaleTempFilesRemoved: a half-written queue file a crash left is
// removed once it is an hour old, at start and by a running sender; a
// fresh one (another instance writing) is left alone.
func TestStaleTempFilesRemoved(t *testing.T) {
	r := newRig(t)
	tmp := filepath.Join(r.dir, "notify", "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(tmp, "crashed.1.tmp")
	fresh := filepath.Join(tmp, "writing.2.tmp")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	hourAgo := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(old, hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	s, _ := r.sender(t, hopTo(deadAddr(t)), SenderOptions{})
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("stale temp file still there at start: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file removed: %v", err)
	}
	// Later, while running: the fresh one has aged.
	if err := os.Chtimes(fresh, hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.cleaned = time.Now().Add(-2 * time.Hour)
	s.mu.Unlock()
	s.poke()
	waitFor(t, "the running sender to remove the aged temp file", func() bool {
		_, err := os.Stat(fresh)
		return os.IsNotExist(err)
	})
}
