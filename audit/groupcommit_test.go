package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/attachgate/attachgate/testsupport"
)

// TestGroupCommit: writers that arrive while a commit is under way share
// the next transaction (one fsync for all); a write that fails inside a
// shared transaction is undone alone; the chain stays whole.
func TestGroupCommit(t *testing.T) {
	db, _ := openTestDB(t)
	l, err := NewSQLite(db, Options{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE side (k TEXT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	side := func(k string) TxFunc {
		return func(ctx context.Context, conn *sql.Conn) error {
			_, err := conn.ExecContext(ctx, `INSERT INTO side (k) VALUES (?)`, k)
			return err
		}
	}
	boom := errors.New("boom")

	// Hold the log's writer lock: the first writer leads and waits on it,
	// the others queue behind.
	l.writeMu.Lock()
	const writers = 8
	errs := make([]error, writers)
	var wg sync.WaitGroup
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		testsupport.WaitFor(t, what, func() bool {
			l.groupMu.Lock()
			defer l.groupMu.Unlock()
			return cond()
		})
	}
	for i := range writers {
		if i == 1 {
			// The leader took its batch (itself) and waits for the lock.
			waitFor("the leader", func() bool { return l.group.leading && len(l.group.queue) == 0 })
		}
		wg.Go(func() {
			extra := side(fmt.Sprint(i))
			if i == 3 {
				extra = func(ctx context.Context, conn *sql.Conn) error {
					if err := side("3")(ctx, conn); err != nil {
						return err
					}
					return boom // after writing: must be undone
				}
			}
			errs[i] = l.RecordWith(context.Background(), []Event{
				{Type: TypeMailReceived, MessageID: fmt.Sprint(i)},
				{Type: TypeMailRelayed, MessageID: fmt.Sprint(i)},
			}, extra)
		})
	}
	waitFor("the others to queue", func() bool { return len(l.group.queue) == writers-1 })
	l.writeMu.Unlock()
	wg.Wait()

	for i, err := range errs {
		if i == 3 {
			if !errors.Is(err, boom) {
				t.Errorf("failing write: %v, want boom", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	}
	l.groupMu.Lock()
	batches := l.group.batches
	l.groupMu.Unlock()
	if batches != 2 {
		t.Errorf("%d transactions for %d writers, want 2 (the leader's, then all that queued)", batches, writers)
	}
	var events, sides int
	db.QueryRow(`SELECT COUNT(*) FROM audit_events WHERE message_id = '3'`).Scan(&events)
	db.QueryRow(`SELECT COUNT(*) FROM side WHERE k = '3'`).Scan(&sides)
	if events != 0 || sides != 0 {
		t.Errorf("failed write left %d events and %d rows", events, sides)
	}
	db.QueryRow(`SELECT COUNT(*) FROM audit_events`).Scan(&events)
	db.QueryRow(`SELECT COUNT(*) FROM side`).Scan(&sides)
	if events != 2*(writers-1) || sides != writers-1 {
		t.Errorf("%d events, %d rows; want %d and %d", events, sides, 2*(writers-1), writers-1)
	}
	res, err := l.Verify(context.Background(), nil)
	if err != nil || !res.OK() || res.Events != int64(2*(writers-1)) {
		t.Fatalf("verify: %+v, %v", res, err)
	}
}

// TestAppendIsFlushed: events queued without waiting are committed with
// the next batch, in order, and Flush waits for them.
func TestAppendIsFlushed(t *testing.T) {
	db, _ := openTestDB(t)
	l, err := NewSQLite(db, Options{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var outcomes []error
	for i := range 5 {
		l.Append([]Event{{Type: TypeMailRelayed, MessageID: fmt.Sprint(i)}}, func(err error) {
			mu.Lock()
			outcomes = append(outcomes, err)
			mu.Unlock()
		})
	}
	if err := l.RecordAll(context.Background(), []Event{{Type: TypeMailReceived, MessageID: "after"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(outcomes) != 5 {
		t.Fatalf("%d outcomes reported, want 5", len(outcomes))
	}
	for _, err := range outcomes {
		if err != nil {
			t.Fatal(err)
		}
	}
	rows, err := db.Query(`SELECT message_id FROM audit_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var id string
		rows.Scan(&id)
		got = append(got, id)
	}
	if want := "0 1 2 3 4 after"; fmt.Sprint(got) != "["+want+"]" {
		t.Fatalf("order %v, want [%s]", got, want)
	}
	if res, err := l.Verify(context.Background(), nil); err != nil || !res.OK() || res.Events != 6 {
		t.Fatalf("verify: %+v %v", res, err)
	}
}

// TestRelaxedAppendCommits: a batch of Append's events alone commits with
// synchronous=NORMAL (no fsync of its own); the connection goes back to
// the pool with synchronous=FULL, so the next message's commit is durable
// and syncs the relaxed one with it; the head outside the database never
// claims a relaxed commit until a sync covered it.
func TestRelaxedAppendCommits(t *testing.T) {
	db, _ := openTestDB(t)
	db.SetMaxOpenConns(1) // every statement below sees the connection the batch used
	opts := anchoredOptions(t)
	opts.Location = time.UTC
	l, err := NewSQLite(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := l.RecordAll(ctx, []Event{{Type: TypeMailReceived, MessageID: "m1"}}); err != nil {
		t.Fatal(err)
	}
	headSeq := func() int64 {
		t.Helper()
		h, ok, err := ReadHead(opts.HeadPath)
		if err != nil || !ok {
			t.Fatalf("read head: %v %v", ok, err)
		}
		return h.Seq
	}
	if got := headSeq(); got != 1 {
		t.Fatalf("head after a durable commit = %d, want 1", got)
	}

	done := make(chan error, 1)
	l.Append([]Event{{Type: TypeMailRelayed, MessageID: "m1"}}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM audit_events`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("events after the relaxed commit: %d, %v", n, err)
	}
	var sync int
	if err := db.QueryRow(`PRAGMA synchronous`).Scan(&sync); err != nil || sync != 2 {
		t.Fatalf("synchronous on the pooled connection after a relaxed commit = %d (%v), want 2 (FULL)", sync, err)
	}
	l.writeMu.Lock()
	unsynced := l.unsynced
	l.writeMu.Unlock()
	if !unsynced {
		t.Fatal("an Append-only batch was not committed relaxed")
	}
	if got := headSeq(); got != 1 {
		t.Fatalf("head moved to %d past a relaxed commit, want 1", got)
	}

	// The next durable commit covers it, and the head moves on.
	if err := l.RecordAll(ctx, []Event{{Type: TypeMailReceived, MessageID: "m2"}}); err != nil {
		t.Fatal(err)
	}
	l.writeMu.Lock()
	unsynced = l.unsynced
	l.writeMu.Unlock()
	if unsynced || headSeq() != 3 {
		t.Fatalf("after a durable commit: unsynced %v, head %d; want false, 3", unsynced, headSeq())
	}

	// With no durable commit after it, a relaxed commit is synced by the
	// timer (or Flush) and the head follows.
	l.Append([]Event{{Type: TypeMailRelayed, MessageID: "m2"}}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitRelaxedSynced(t, l, "the relaxed commit synced")
	if got := headSeq(); got != 4 {
		t.Fatalf("head after the sync = %d, want 4", got)
	}
	if res, err := l.Verify(ctx, nil); err != nil || !res.OK() || res.Events != 4 {
		t.Fatalf("verify: %+v, %v", res, err)
	}
}

// TestSteadyLoadNeedsNoExtraSync: when every relaxed commit is followed
// within the delay by a message's durable commit (steady mail), the
// timer never syncs on its own: the durable commits already did. Once the
// mail stops, the last relaxed commit is synced once, by one fsync of the
// WAL file.
func TestSteadyLoadNeedsNoExtraSync(t *testing.T) {
	db, _ := openTestDB(t)
	opts := anchoredOptions(t)
	l, err := NewSQLite(db, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	done := make(chan error, 1)
	syncs := func() int {
		l.writeMu.Lock()
		defer l.writeMu.Unlock()
		return l.walSyncs
	}
	// 1.6 s of mail: each message's durable commit, then its relaxed
	// mail.relayed, which stays unsynced until the next message.
	for start := time.Now(); time.Since(start) < relaxedSyncDelay*8/5; {
		if err := l.RecordAll(ctx, []Event{{Type: TypeMailReceived, MessageID: "m"}}); err != nil {
			t.Fatal(err)
		}
		l.Append([]Event{{Type: TypeMailRelayed, MessageID: "m"}}, func(err error) { done <- err })
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := syncs(); n != 0 {
		t.Errorf("%d extra syncs while every relaxed commit was followed by a durable one, want 0", n)
	}
	waitRelaxedSynced(t, l, "the last relaxed commit synced")
	if n := syncs(); n != 1 {
		t.Errorf("%d syncs after the mail stopped, want 1", n)
	}
	if l.walPath == "" {
		t.Error("the relaxed commits were synced by a checkpoint, not by an fsync of the WAL")
	}
}

// TestBatchWriteFailingAfterAnInsert: a write of a shared transaction
// that fails after inserting one of its events is rolled back to its
// savepoint, and the next write links to the event before it, not to the
// rolled-back one (appendTx keeps the chain head in l.pending).
func TestBatchWriteFailingAfterAnInsert(t *testing.T) {
	db, _ := openTestDB(t)
	l, err := NewSQLite(db, anchoredOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	far := time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) // seal refuses it
	batches := [][]Event{
		{{Type: TypeMailReceived, MessageID: "0"}},
		{{Type: TypeMailReceived, MessageID: "1"}, {Type: TypeMailRelayed, MessageID: "1", Time: far}},
		{{Type: TypeMailReceived, MessageID: "2"}},
	}
	l.writeMu.Lock()
	errs := make([]error, len(batches))
	var wg sync.WaitGroup
	for i, events := range batches {
		if i == 1 {
			testsupport.WaitFor(t, "the leader", func() bool {
				l.groupMu.Lock()
				defer l.groupMu.Unlock()
				return l.group.leading && len(l.group.queue) == 0
			})
		}
		wg.Go(func() { errs[i] = l.RecordAll(ctx, events) })
	}
	testsupport.WaitFor(t, "the others to queue", func() bool {
		l.groupMu.Lock()
		defer l.groupMu.Unlock()
		return len(l.group.queue) == len(batches)-1
	})
	l.writeMu.Unlock()
	wg.Wait()
	if errs[0] != nil || errs[1] == nil || errs[2] != nil {
		t.Fatalf("errors %v, want only the second write's", errs)
	}
	if res, err := l.Verify(ctx, nil); err != nil || !res.OK() || res.Events != 2 {
		t.Fatalf("verify: %v, %v", res, err)
	}
}

// waitRelaxedSynced waits until no relaxed commit of l is left unsynced.
func waitRelaxedSynced(t *testing.T, l *SQLiteLog, what string) {
	t.Helper()
	testsupport.WaitFor(t, what, func() bool {
		l.writeMu.Lock()
		defer l.writeMu.Unlock()
		return !l.unsynced
	})
}
