package quarantine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"

	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/notify/mailtmpl"
	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/store"
)

const testBase = "https://files.example.com"

// notifier is a real notify.Service sending through the env's next hop.
func (e *env) notifier(t *testing.T) *notify.Service {
	t.Helper()
	tmpl, err := mailtmpl.Load("", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	composer, err := notify.NewComposer(notify.ComposerOptions{Templates: tmpl, Hostname: "gw.test",
		From: "attachgate@gw.test", Language: "en", MarkerKey: e.ring.MACKey(), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	sender, err := notify.NewSender(notify.SenderOptions{Hop: e.hop, Audit: e.rec, Ring: e.ring,
		Dir: filepath.Join(e.dir, "notify"), Logger: discardLog(), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sender.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &notify.Service{Composer: composer, Sender: sender, Logger: discardLog()}
}

// openActs opens a Manager with notices and links on, releasing through
// hop.
func (e *env) openActs(t *testing.T, hop *smtptest.Server, n *notify.Service) *Manager {
	t.Helper()
	return e.openActsAt(t, hopAt(hop.Addr), n)
}

// openActsAt opens a Manager with notices and links on, on the env's
// backend (SQLite or Redis), releasing through hop.
func (e *env) openActsAt(t *testing.T, hop relay.Hop, n *notify.Service) *Manager {
	t.Helper()
	o := Options{DB: e.st.DB(), Dir: filepath.Join(e.dir, "quarantine"), Ring: e.ring,
		Audit: e.rec, Hop: hop, Deliverer: rawDeliverer{}, HoldFor: time.Hour, Now: e.clock.Now,
		Logger: discardLog(), Notify: n}
	if e.redis != nil {
		o.DB, o.Redis, o.RedisPrefix = nil, e.redis, "test:"
	}
	m, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if e.redis != nil {
		err = m.EnableActionsRedis(context.Background(), e.redis, "test:", testBase)
	} else {
		err = m.EnableActions(context.Background(), e.st.DB(), testBase)
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// stateLeft counts what the quarantine keeps: rows of its tables in
// SQLite, keys under its prefix in Redis.
func (e *env) stateLeft(t *testing.T) int {
	t.Helper()
	if e.redis != nil {
		keys, err := e.redis.Keys(context.Background(), "test:quarantine:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	}
	total := 0
	for _, table := range []string{"quarantine_flows", "quarantine_actions", "quarantine_items"} {
		var n int
		if err := e.st.DB().QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

func held(id string, action policies.Action, approvers ...string) pipeline.Held {
	return pipeline.Held{ID: id, HeaderID: "<x@example.com>", Env: pipeline.Envelope{From: "a@example.com",
		To: []string{"b@example.net"}, ClientAddr: "127.0.0.1", Helo: "client.test"}, Action: action, Rule: "r1",
		Approvers: approvers, ApprovalTimeout: time.Hour}
}

// linksTo waits for the notice to rcpt at the next hop and returns its
// /h/ tokens in order.
func linksTo(t *testing.T, hop *smtptest.Server, rcpt string, want int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, msg := range hop.Messages() {
			if !slices.Contains(msg.To, rcpt) {
				continue
			}
			text := plainText(t, msg.Data)
			var toks []string
			for _, m := range regexp.MustCompile(regexp.QuoteMeta(testBase)+`/h/([A-Za-z0-9_-]+)`).FindAllStringSubmatch(text, -1) {
				if !slices.Contains(toks, m[1]) {
					toks = append(toks, m[1])
				}
			}
			if len(toks) != want {
				t.Fatalf("notice to %s has %d links, want %d:\n%s", rcpt, len(toks), want, text)
			}
			return toks
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no notice to %s", rcpt)
	return nil
}

func plainText(t *testing.T, raw []byte) string {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	_ = e.Walk(func(_ []int, p *message.Entity, err error) error {
		if mt, _, _ := p.Header.ContentType(); err == nil && mt == "text/plain" {
			b, _ := io.ReadAll(p.Body)
			out.Write(b)
		}
		return nil
	})
	return out.String()
}

func mailTo(hop *smtptest.Server, rcpt string) []smtptest.Message {
	var out []smtptest.Message
	for _, m := range hop.Messages() {
		if slices.Contains(m.To, rcpt) {
			out = append(out, m)
		}
	}
	return out
}

// The approval deadline is in the database: a Manager opened again after
// a restart rejects the message when it passes, with a DSN, and the
// approvers' links then say it expired.
func TestApprovalDeadlineSurvivesReopen(t *testing.T) {
	forEachBackend(t, testApprovalDeadlineSurvivesReopen)
}

func testApprovalDeadlineSurvivesReopen(t *testing.T, e *env) {
	n := e.notifier(t)
	m := e.openActs(t, e.next, n)
	ctx := context.Background()
	id := store.NewID()
	if _, err := m.Holder().Hold(ctx, held(id, policies.Approve, "boss@example.com"), bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	toks := linksTo(t, e.next, "boss@example.com", 3)

	m2 := e.openActs(t, e.next, n) // the restart
	e.clock.Add(59 * time.Minute)
	m2.actionsDue(ctx)
	if _, err := m2.Get(ctx, id); err != nil {
		t.Fatalf("rejected before its deadline: %v", err)
	}
	e.clock.Add(time.Minute)
	m2.actionsDue(ctx)
	if _, err := m2.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("still held after the deadline: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(mailTo(e.next, "a@example.com")) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	dsn := mailTo(e.next, "a@example.com")
	if len(dsn) != 1 || !bytes.Contains(dsn[0].Data, []byte("multipart/report")) || dsn[0].From != "" {
		t.Fatalf("sender's DSN: %+v", dsn)
	}
	if len(mailTo(e.next, "b@example.net")) != 0 {
		t.Fatal("an expired message was delivered")
	}
	tk, err := m2.Act(ctx, toks[1], "")
	if !errors.Is(err, ErrTicketClosed) || tk.State != TicketDecided || tk.Decision != DecisionExpired {
		t.Fatalf("approve after expiry: %+v, %v", tk, err)
	}
	types := strings.Join(e.eventTypes(t), " ")
	for _, want := range []string{"mail.held", "approval.requested", "approval.expired", "mail.rejected"} {
		if !strings.Contains(types, want) {
			t.Errorf("no %s in %s", want, types)
		}
	}
}

// Send now with the next hop down: the message stays held, the link is
// not used up, and Cancel still works.
func TestSendNowFailureKeepsLinks(t *testing.T) { forEachBackend(t, testSendNowFailureKeepsLinks) }

func testSendNowFailureKeepsLinks(t *testing.T, e *env) {
	n := e.notifier(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	m := e.openActsAt(t, hopAt(dead), n)
	ctx := context.Background()
	id := store.NewID()
	if _, err := m.Holder().Hold(ctx, held(id, policies.Hold), bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	toks := linksTo(t, e.next, "a@example.com", 2)
	var de *DeliveryError
	if _, err := m.Act(ctx, toks[1], ""); !errors.As(err, &de) {
		t.Fatalf("send now with the next hop down: %v", err)
	}
	if tk, err := m.Ticket(ctx, toks[1]); err != nil || tk.State != TicketOpen {
		t.Fatalf("send now link after a failed send: %+v, %v", tk, err)
	}
	if tk, err := m.Act(ctx, toks[0], ""); err != nil || tk.Decision != DecisionCancelled {
		t.Fatalf("cancel: %+v, %v", tk, err)
	}
	if _, err := m.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cancelled message still held: %v", err)
	}
	if tk, err := m.Ticket(ctx, toks[1]); err != nil || tk.State != TicketDecided || tk.Decision != DecisionCancelled {
		t.Fatalf("send now after cancel: %+v, %v", tk, err)
	}
}

// A hold that fails leaves no approval behind; a message that cannot be
// approved is not held at all.
func TestApprovalStateOnlyWithTheHold(t *testing.T) {
	forEachBackend(t, testApprovalStateOnlyWithTheHold)
}

func testApprovalStateOnlyWithTheHold(t *testing.T, e *env) {
	ctx := context.Background()
	plain := e.open(t) // no EnableActions
	if _, err := plain.Holder().Hold(ctx, held(store.NewID(), policies.Approve, "boss@example.com"), bytes.NewReader(testMsg)); !errors.Is(err, ErrActionsOff) {
		t.Fatalf("approve without links: %v", err)
	}
	m := e.openActs(t, e.next, e.notifier(t))
	e.rec.mu.Lock()
	e.rec.fail = true
	e.rec.mu.Unlock()
	if _, err := m.Holder().Hold(ctx, held(store.NewID(), policies.Approve, "boss@example.com"), bytes.NewReader(testMsg)); err == nil {
		t.Fatal("held although mail.held could not be recorded")
	}
	if n := e.stateLeft(t); n != 0 {
		t.Errorf("a failed hold left %d rows or keys", n)
	}
}

func TestTicketStates(t *testing.T) { forEachBackend(t, testTicketStates) }

func testTicketStates(t *testing.T, e *env) {
	m := e.openActs(t, e.next, e.notifier(t))
	ctx := context.Background()
	id := store.NewID()
	if _, err := m.Holder().Hold(ctx, held(id, policies.Approve, "boss@example.com"), bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	toks := linksTo(t, e.next, "boss@example.com", 3)
	forged, _, _ := store.NewToken()
	for name, tok := range map[string]string{"forged": forged, "empty": "", "long": strings.Repeat("A", 200),
		"a hash of a real one": string(store.HashToken(toks[1]))} {
		if _, err := m.Ticket(ctx, tok); !errors.Is(err, ErrTokenUnknown) {
			t.Errorf("%s token: %v", name, err)
		}
		if _, err := m.Act(ctx, tok, ""); !errors.Is(err, ErrTokenUnknown) {
			t.Errorf("%s token acts: %v", name, err)
		}
	}
	view, err := m.Ticket(ctx, toks[0])
	if err != nil || view.State != TicketOpen || !strings.Contains(view.Text, secret) || view.Subject != secret {
		t.Fatalf("view: %+v, %v", view, err)
	}
	if _, err := m.Act(ctx, toks[0], ""); !errors.Is(err, ErrNotAnAction) {
		t.Fatalf("view link acted: %v", err)
	}
	// Looking changes nothing.
	for i := 0; i < 3; i++ {
		if tk, err := m.Ticket(ctx, toks[2]); err != nil || tk.State != TicketOpen {
			t.Fatalf("reject link: %+v, %v", tk, err)
		}
	}
	tk, err := m.Act(ctx, toks[2], "  not\r\nnow  ")
	if err != nil || tk.Decision != DecisionRejected || tk.Reason != "not  now" {
		t.Fatalf("reject: %+v, %v", tk, err)
	}
	if tk, err := m.Act(ctx, toks[2], ""); !errors.Is(err, ErrTicketClosed) || tk.State != TicketUsed {
		t.Fatalf("replayed reject: %+v, %v", tk, err)
	}
	if tk, err := m.Ticket(ctx, toks[0]); err != nil || tk.State != TicketDecided || tk.Text != "" {
		t.Fatalf("view after the decision: %+v, %v", tk, err)
	}
}

// Two instances on one Redis: approvers pressing Approve and Reject of
// one message on both at once give exactly one decision, carried out once.
func TestRedisApprovalDecidedOnceAcrossInstances(t *testing.T) {
	e := newRedisEnv(t)
	n := e.notifier(t)
	m1, m2 := e.openActs(t, e.next, n), e.openActs(t, e.next, n)
	ctx := context.Background()
	const rounds = 5
	for r := 0; r < rounds; r++ {
		id := store.NewID()
		b1, b2 := fmt.Sprintf("boss%d@example.com", r), fmt.Sprintf("chief%d@example.com", r)
		if _, err := m1.Holder().Hold(ctx, held(id, policies.Approve, b1, b2), bytes.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
		t1, t2 := linksTo(t, e.next, b1, 3), linksTo(t, e.next, b2, 3)
		presses := []struct {
			m   *Manager
			tok string
		}{{m1, t1[1]}, {m2, t1[1]}, {m2, t2[2]}, {m1, t2[2]}}
		type result struct {
			tk  Ticket
			err error
		}
		results := make(chan result, len(presses))
		start := make(chan struct{})
		for _, p := range presses {
			go func() {
				<-start
				tk, err := p.m.Act(ctx, p.tok, "")
				results <- result{tk, err}
			}()
		}
		close(start)
		var won []Ticket
		for range presses {
			res := <-results
			switch {
			case res.err == nil:
				won = append(won, res.tk)
			case errors.Is(res.err, ErrTicketClosed):
				if res.tk.State != TicketUsed && res.tk.State != TicketDecided && res.tk.State != TicketGone {
					t.Errorf("round %d: closed link in state %v", r, res.tk.State)
				}
			default:
				t.Errorf("round %d: act: %v", r, res.err)
			}
		}
		if len(won) != 1 {
			t.Fatalf("round %d: %d decisions, want exactly one: %+v", r, len(won), won)
		}
		if _, err := m2.Get(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("round %d: still held after the decision: %v", r, err)
		}
		for _, tok := range []string{t1[0], t1[1], t1[2], t2[0], t2[1], t2[2]} {
			tk, err := m1.Ticket(ctx, tok)
			if err != nil || tk.Decision != won[0].Decision || tk.DecidedBy != won[0].Party {
				t.Fatalf("round %d: link after the decision: %+v, %v (winner %+v)", r, tk, err, won[0])
			}
		}
	}
	decided := 0
	for _, typ := range e.eventTypes(t) {
		if typ == "approval.approved" || typ == "approval.rejected" {
			decided++
		}
	}
	if decided != rounds {
		t.Fatalf("%d approval decisions audited over %d messages", decided, rounds)
	}
}

// A week after a decision was carried out, its flow and links are
// forgotten (a late click is then an unknown link); in Redis every key
// of it carries a TTL meanwhile, so nothing outlives a missed purge.
func TestClosedLinksPurged(t *testing.T) { forEachBackend(t, testClosedLinksPurged) }

func testClosedLinksPurged(t *testing.T, e *env) {
	m := e.openActs(t, e.next, e.notifier(t))
	ctx := context.Background()
	id := store.NewID()
	if _, err := m.Holder().Hold(ctx, held(id, policies.Hold), bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	toks := linksTo(t, e.next, "a@example.com", 2)
	if tk, err := m.Act(ctx, toks[0], ""); err != nil || tk.Decision != DecisionCancelled {
		t.Fatalf("cancel: %+v, %v", tk, err)
	}
	if e.redis != nil {
		keys, err := e.redis.Keys(ctx, "test:quarantine:act:*").Result()
		if err != nil || len(keys) == 0 {
			t.Fatalf("keys: %v, %v", keys, err)
		}
		for _, k := range keys {
			typ, _ := e.redis.Type(ctx, k).Result()
			ttl, err := e.redis.PTTL(ctx, k).Result()
			if typ != "zset" && (err != nil || ttl <= 0) {
				t.Errorf("%s (%s) has no TTL after its decision was carried out: %v, %v", k, typ, ttl, err)
			}
		}
	}
	e.clock.Add(keepClosed - time.Minute)
	m.actionsDue(ctx)
	if tk, err := m.Ticket(ctx, toks[1]); err != nil || tk.State != TicketDecided {
		t.Fatalf("send now link before the purge: %+v, %v", tk, err)
	}
	e.clock.Add(2 * time.Minute)
	m.actionsDue(ctx)
	if _, err := m.Ticket(ctx, toks[1]); !errors.Is(err, ErrTokenUnknown) {
		t.Fatalf("send now link after the purge: %v", err)
	}
	if n := e.stateLeft(t); n != 0 {
		t.Errorf("purge left %d rows or keys", n)
	}
}
