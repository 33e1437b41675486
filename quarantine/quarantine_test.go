package quarantine

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/notify/mailtmpl"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

// rawDeliverer relays the held message as it is (the real one is
// smtpd.Pipeline, tested in smtpd).
type rawDeliverer struct{}

func (rawDeliverer) Deliver(_ context.Context, _ Item, msg Source, hop relay.Session, _ string) (string, error) {
	rd, err := msg.Open()
	if err != nil {
		return "", err
	}
	defer rd.Close()
	w, err := hop.Data()
	if err != nil {
		return "", &DeliveryError{Op: "DATA", Err: err}
	}
	if _, err := io.Copy(w, rd); err != nil {
		return "", &DeliveryError{Op: "DATA", Err: err}
	}
	reply, err := w.Close()
	if err != nil {
		return "", &DeliveryError{Op: "end of DATA", Err: err}
	}
	return reply, nil
}

// failingRecorder fails while fail is set.
type failingRecorder struct {
	next audit.Recorder
	mu   sync.Mutex
	fail bool
}

func (r *failingRecorder) Record(ctx context.Context, e audit.Event) error {
	r.mu.Lock()
	fail := r.fail
	r.mu.Unlock()
	if fail {
		return errors.New("audit down (test)")
	}
	return r.next.Record(ctx, e)
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{now: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)} }
func discardLog() *slog.Logger       { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func hopAt(addr string) relay.Hop {
	return &relay.SMTPHop{Address: addr, HeloName: "gw.test", Timeout: 10 * time.Second}
}
func (e *env) open(t *testing.T) *Manager { t.Helper(); return e.openWith(t, e.hop) }

// env is a quarantine over a real SQLite database (or a real Redis), key
// ring, audit log and notifier queue, with a real next hop.
type env struct {
	dir    string
	st     *store.SQLite
	redis  redis.UniversalClient // set: the index is in Redis
	log    *audit.SQLiteLog
	rec    *failingRecorder
	ring   *vault.KeyRing
	clock  *clock
	hop    relay.Hop
	next   *smtptest.Server
	notify *notify.Service
	// maxRetryAge and retention are the Options of open (0: defaults).
	maxRetryAge, retention time.Duration
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, "attachgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	al, err := audit.NewSQLite(st.DB(), audit.Options{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	ring, err := vault.OpenKeyRing(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	next := smtptest.NewServer(t, smtptest.Behaviour{})
	e := &env{dir: dir, st: st, log: al, rec: &failingRecorder{next: al}, ring: ring, clock: newClock(),
		hop: hopAt(next.Addr), next: next}
	set, err := mailtmpl.Load("", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	composer, err := notify.NewComposer(notify.ComposerOptions{Templates: set, Hostname: "gw.test",
		From: "Attachgate <attachgate@gw.test>", Language: "en", MarkerKey: ring.MACKey()})
	if err != nil {
		t.Fatal(err)
	}
	sender, err := notify.NewSender(notify.SenderOptions{Hop: e.hop, Audit: al, Ring: ring,
		Dir: filepath.Join(dir, "notify"), Logger: discardLog()})
	if err != nil {
		t.Fatal(err)
	}
	e.notify = &notify.Service{Composer: composer, Sender: sender, Logger: discardLog()}
	return e
}

func (e *env) openWith(t *testing.T, hop relay.Hop) *Manager {
	t.Helper()
	o := Options{DB: e.st.DB(), Dir: filepath.Join(e.dir, "quarantine"), Ring: e.ring,
		Audit: e.rec, Hop: hop, Deliverer: rawDeliverer{}, HoldFor: time.Hour, Now: e.clock.Now, Logger: discardLog(),
		Notify: e.notify, MaxRetryAge: e.maxRetryAge, Retention: e.retention}
	if e.redis != nil {
		o.DB, o.Redis, o.RedisPrefix = nil, e.redis, "test:"
	}
	m, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (e *env) eventTypes(t *testing.T) []string {
	t.Helper()
	var buf bytes.Buffer
	if err := e.log.Export(context.Background(), audit.Query{}, &buf, audit.FormatCSV, false); err != nil {
		t.Fatal(err)
	}
	var types []string
	for i, line := range strings.Split(strings.TrimSpace(buf.String()), "\r\n") {
		if i == 0 || line == "" {
			continue
		}
		types = append(types, strings.Split(line, ",")[2])
	}
	return types
}

const secret = "PLAINTEXT-MARKER-0815"

var testMsg = []byte("From: a@example.com\r\nTo: b@example.net\r\nSubject: " + secret + "\r\n\r\nbody " + secret + "\r\n")

func item(id string, action policies.Action) Item {
	return Item{ID: id, HeaderID: "<x@example.com>", From: "a@example.com", To: []string{"b@example.net", "c@example.org"},
		ClientAddr: "127.0.0.1", Helo: "client.test", Action: action, Rule: "r1"}
}

func TestHoldGetListDelete(t *testing.T) {
	e := newEnv(t)
	m := e.open(t)
	ctx := context.Background()
	id := store.NewID()
	it, err := m.Hold(ctx, item(id, policies.Quarantine), bytes.NewReader(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	if it.Size != int64(len(testMsg)) || it.KeyID == "" || len(it.SHA256) != 64 || !it.ReleaseAt.IsZero() {
		t.Errorf("held item %+v", it)
	}
	got, err := m.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.From != "a@example.com" || len(got.To) != 2 || got.Rule != "r1" || got.Action != policies.Quarantine ||
		!got.HeldAt.Equal(e.clock.Now()) {
		t.Errorf("Get = %+v", got)
	}
	list, err := m.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("List = %+v, %v", list, err)
	}
	// Encrypted at rest.
	filepath.WalkDir(e.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if data, _ := os.ReadFile(p); bytes.Contains(data, []byte(secret)) {
				t.Errorf("%s holds plaintext", p)
			}
		}
		return nil
	})
	if _, err := m.Delete(ctx, id, "admin:ops"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	if _, err := m.Delete(ctx, id, "admin:ops"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete again: %v", err)
	}
	if n := countBlobs(t, filepath.Join(e.dir, "quarantine")); n != 0 {
		t.Errorf("%d blobs left", n)
	}
	if got := strings.Join(e.eventTypes(t), " "); got != "mail.held mail.deleted" {
		t.Errorf("events: %s", got)
	}
}

func countBlobs(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.HasSuffix(p, ".age") {
			n++
		}
		return nil
	})
	return n
}

func TestHoldIsUndoneWhenItCannotBeAudited(t *testing.T) {
	e := newEnv(t)
	m := e.open(t)
	e.rec.fail = true
	id := store.NewID()
	if _, err := m.Hold(context.Background(), item(id, policies.Hold), bytes.NewReader(testMsg)); err == nil {
		t.Fatal("Hold succeeded without its audit event")
	}
	if _, err := m.Get(context.Background(), id); !errors.Is(err, ErrNotFound) {
		t.Errorf("record left: %v", err)
	}
	if n := countBlobs(t, filepath.Join(e.dir, "quarantine")); n != 0 {
		t.Errorf("%d blobs left", n)
	}
}

func TestOpenRemovesOrphanedBlobs(t *testing.T) {
	e := newEnv(t)
	m := e.open(t)
	kept := store.NewID()
	if _, err := m.Hold(context.Background(), item(kept, policies.Quarantine), bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	// A crash between storing a blob and recording it leaves an orphan.
	blobs, err := vault.NewBlobStore(filepath.Join(e.dir, "quarantine"), e.ring)
	if err != nil {
		t.Fatal(err)
	}
	orphan := store.NewID()
	if _, err := blobs.Put(orphan, bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	if n := countBlobs(t, filepath.Join(e.dir, "quarantine")); n != 2 {
		t.Fatalf("%d blobs before reopening", n)
	}
	m = e.open(t)
	if n := countBlobs(t, filepath.Join(e.dir, "quarantine")); n != 1 {
		t.Errorf("%d blobs after reopening, want the held one", n)
	}
	if _, err := m.Get(context.Background(), kept); err != nil {
		t.Errorf("held item lost: %v", err)
	}
	if _, err := blobs.Open(kept, ""); err != nil {
		t.Errorf("held blob lost: %v", err)
	}
}

func TestReleaseDueWaitsForReleaseAt(t *testing.T) {
	e := newEnv(t)
	m := e.open(t)
	ctx := context.Background()
	held, quarantined := store.NewID(), store.NewID()
	it, err := m.Hold(ctx, item(held, policies.Hold), bytes.NewReader(testMsg))
	if err != nil {
		t.Fatal(err)
	}
	if !it.ReleaseAt.Equal(e.clock.Now().Add(time.Hour)) {
		t.Errorf("release_at %v", it.ReleaseAt)
	}
	if _, err := m.Hold(ctx, item(quarantined, policies.Quarantine), bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(59 * time.Minute)
	if n, err := m.ReleaseDue(ctx); err != nil || n != 0 {
		t.Fatalf("before release_at: %d, %v", n, err)
	}
	e.clock.Add(time.Minute)
	if n, err := m.ReleaseDue(ctx); err != nil || n != 1 {
		t.Fatalf("at release_at: %d, %v", n, err)
	}
	msgs := e.next.Messages()
	if len(msgs) != 1 || !bytes.Equal(msgs[0].Data, testMsg) || strings.Join(msgs[0].To, ",") != "b@example.net,c@example.org" {
		t.Fatalf("next hop got %+v", msgs)
	}
	list, _ := m.List(ctx)
	if len(list) != 1 || list[0].ID != quarantined {
		t.Errorf("left: %+v (a quarantined item waits for an admin)", list)
	}
	e.clock.Add(1000 * time.Hour)
	if n, _ := m.ReleaseDue(ctx); n != 0 {
		t.Errorf("quarantined item released on its own")
	}
	if got := strings.Join(e.eventTypes(t), " "); got != "mail.held mail.held mail.released" {
		t.Errorf("events: %s", got)
	}
}

func TestFailedReleaseStaysHeldAndBacksOff(t *testing.T) {
	e := newEnv(t)
	// A next hop that is not there.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	m := e.openWith(t, hopAt(dead))
	ctx := context.Background()
	id := store.NewID()
	if _, err := m.Hold(ctx, item(id, policies.Hold), bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Hour)
	_, err := m.Release(ctx, id, audit.ActorSystem)
	var de *DeliveryError
	if !errors.As(err, &de) || de.Op != "connect" {
		t.Fatalf("release to a dead hop: %v", err)
	}
	it, err := m.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if it.Attempts != 1 || it.LastError == "" || !it.ReleaseAt.Equal(e.clock.Now().Add(30*time.Second)) {
		t.Errorf("after a failure: attempts %d, error %q, release_at %v", it.Attempts, it.LastError, it.ReleaseAt)
	}
	if n, _ := m.ReleaseDue(ctx); n != 0 {
		t.Error("released during the back-off")
	}
	// The next hop is back; so is the mail, after the back-off.
	m = e.openWith(t, e.hop)
	e.clock.Add(30 * time.Second)
	if n, err := m.ReleaseDue(ctx); err != nil || n != 1 {
		t.Fatalf("after the back-off: %d, %v", n, err)
	}
	if len(e.next.Messages()) != 1 {
		t.Error("not delivered")
	}
	types := strings.Join(e.eventTypes(t), " ")
	if types != "mail.held mail.deferred mail.released" {
		t.Errorf("events: %s", types)
	}
}

func TestReleaseEveryRecipientDeferredStaysHeld(t *testing.T) {
	e := newEnv(t)
	m := e.open(t)
	ctx := context.Background()
	id := store.NewID()
	if _, err := m.Hold(ctx, item(id, policies.Quarantine), bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	busy := &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy"}
	e.next.SetBehaviour(smtptest.Behaviour{RejectRcpt: map[string]*smtp.SMTPError{
		"b@example.net": busy, "c@example.org": busy}})
	res, err := m.Release(ctx, id, "admin:ops")
	var de *DeliveryError
	if !errors.As(err, &de) || !strings.Contains(de.Op, "b@example.net") {
		t.Fatalf("release: %v", err)
	}
	if len(e.next.Messages()) != 0 || len(res.Delivered) != 0 || len(res.Pending) != 2 {
		t.Errorf("delivered %v, result %+v", e.next.Messages(), res)
	}
	it, _ := m.Get(ctx, id)
	// An admin's release is carried out: retried on its own from now on.
	if it.Attempts != 1 || !it.ReleaseAt.Equal(e.clock.Now().Add(30*time.Second)) || it.ReleasedBy != "admin:ops" {
		t.Errorf("quarantined item after a failure: %+v", it)
	}
}

func TestBusyItemsAreRefused(t *testing.T) {
	e := newEnv(t)
	m := e.open(t)
	id := store.NewID()
	if _, err := m.Hold(context.Background(), item(id, policies.Quarantine), bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	if !m.claim(id) {
		t.Fatal("claim")
	}
	if _, err := m.Release(context.Background(), id, "admin:ops"); !errors.Is(err, ErrBusy) {
		t.Errorf("Release of a busy item: %v", err)
	}
	if _, err := m.Delete(context.Background(), id, "admin:ops"); !errors.Is(err, ErrBusy) {
		t.Errorf("Delete of a busy item: %v", err)
	}
	m.unclaim(id)
	if _, err := m.Delete(context.Background(), id, "admin:ops"); err != nil {
		t.Errorf("Delete: %v", err)
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute}
	for i, w := range want {
		if got := backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := backoff(100); got != time.Hour {
		t.Errorf("backoff(100) = %v", got)
	}
}

func TestRunReleasesWhenDue(t *testing.T) {
	e := newEnv(t)
	m, err := Open(context.Background(), Options{DB: e.st.DB(), Dir: filepath.Join(e.dir, "quarantine"), Ring: e.ring,
		Audit: e.rec, Hop: e.hop, Deliverer: rawDeliverer{}, HoldFor: 300 * time.Millisecond, Logger: discardLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if _, err := m.Hold(context.Background(), item(store.NewID(), policies.Hold), bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(e.next.Messages()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("not released")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPageWalksHeldTimeThenID pages through messages held at two instants
// (several per instant, so the ID breaks ties) while more are held,
// released and deleted between pages: each message held before it was
// reached comes exactly once, in list order.
func TestPageWalksHeldTimeThenID(t *testing.T) {
	e := newEnv(t)
	m := e.open(t)
	ctx := context.Background()
	hold := func(id string) {
		t.Helper()
		if _, err := m.Hold(ctx, item(id, policies.Quarantine), bytes.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
	}
	// IDs made now sort before the first seven: held later, they must
	// still come after them (held time first).
	late := []string{store.NewID(), store.NewID()}
	var first []string
	for i := 0; i < 7; i++ {
		if i == 4 {
			e.clock.Add(time.Second)
		}
		id := store.NewID()
		first = append(first, id)
		hold(id)
	}
	if late[1] >= first[0] {
		t.Fatalf("premise: IDs %s made before %s sort after it", late[1], first[0])
	}
	all, err := m.List(ctx)
	if err != nil || len(all) != 7 {
		t.Fatalf("List = %d items, %v", len(all), err)
	}

	var seen []string
	after := Cursor{}
	for page := 0; ; page++ {
		items, more, err := m.Page(ctx, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			seen = append(seen, it.ID)
		}
		if !more {
			break
		}
		if len(items) != 3 {
			t.Fatalf("page %d: %d items with more to come, want 3", page, len(items))
		}
		// The cursor goes through its text form, as over HTTP.
		if after, err = ParseCursor(CursorOf(items[len(items)-1]).String()); err != nil {
			t.Fatal(err)
		}
		if page == 0 {
			// The cursor's own item goes away; the cursor still works.
			if _, err := m.Delete(ctx, items[len(items)-1].ID, "admin:test"); err != nil {
				t.Fatal(err)
			}
			e.clock.Add(time.Second)
			hold(late[0])
			hold(late[1])
		}
		if page > 5 {
			t.Fatal("paging does not end")
		}
	}
	want := []string{}
	for _, it := range all {
		want = append(want, it.ID)
	}
	want = append(want, late...)
	if !slices.Equal(seen, want) {
		t.Errorf("paged %v\nwant    %v", seen, want)
	}
	if !slices.IsSortedFunc(all, func(a, b Item) int {
		if c := a.HeldAt.Compare(b.HeldAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	}) {
		t.Errorf("List is not in held time, ID order")
	}
	if _, _, err := m.Page(ctx, Cursor{}, 0); err == nil {
		t.Error("Page with limit 0 did not fail")
	}
}

func TestParseCursor(t *testing.T) {
	c := Cursor{HeldAt: time.Date(2026, 11, 25, 10, 0, 0, 123, time.UTC), ID: "01900000-0000-7000-8000-000000000000"}
	got, err := ParseCursor(c.String())
	if err != nil || !got.HeldAt.Equal(c.HeldAt) || got.ID != c.ID {
		t.Errorf("round trip: %+v, %v", got, err)
	}
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, bad := range []string{
		"", "!!!", enc("123"), enc("123."), enc("x.id"), enc("1." + strings.Repeat("a", 65)), enc("1.\xff"),
		c.String() + "=",
	} {
		if _, err := ParseCursor(bad); err == nil {
			t.Errorf("ParseCursor(%q) accepted", bad)
		}
	}
}
