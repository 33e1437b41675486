package audit

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Group commit. Concurrent writers of the SQLite log (every SMTP session
// records its messages' events) share transactions: the first writer to
// arrive becomes the leader, takes every write queued by then, runs them in
// one BEGIN IMMEDIATE ... COMMIT (one WAL fsync for all) and hands the
// leadership to a writer queued meanwhile. Each write runs inside its own
// SAVEPOINT, so a failing write is undone alone and the others commit.
// Under load the leader lingers up to groupLinger for more writers; a lone
// writer never waits.

const (
	// groupLinger is how long a leader waits for more writers when the
	// log is under concurrent load: the previous batch had several
	// writers, or committed less than groupBusy ago.
	groupLinger = 2 * time.Millisecond
	groupBusy   = 10 * time.Millisecond
	// asyncLinger is how long Append's events wait for a writer that
	// waits (the next message's records) to share its commit; such a
	// writer ends the wait at once.
	asyncLinger = 20 * time.Millisecond
	// maxGroup bounds the writes of one transaction.
	maxGroup = 64
)

// TxFunc writes in the transaction of a batch, on its connection. It must
// not commit or roll back.
type TxFunc func(ctx context.Context, conn *sql.Conn) error

type groupWrite struct {
	ctx    context.Context
	events []Event
	// extra runs before the events, in the same transaction.
	extra  TxFunc
	stored []Event
	err    error
	done   chan struct{} // closed when err and stored are set
	lead   chan struct{} // closed when this writer is to lead next
	// async: nobody waits (Append); then is told the outcome.
	async bool
	then  func(error)
}

type groupState struct {
	queue   []*groupWrite
	leading bool
	last    int // size of the previous batch
	batches int // transactions run so far
	lastEnd time.Time
	// wake, while a leader lingers for Append's events only, is closed
	// by the first writer that waits.
	wake chan struct{}
}

// RecordWith appends events and runs extra (when not nil) in the same
// durable transaction, shared with concurrent writers: the mail path
// records a message's metadata (package store, in the same database) and
// its events with one commit. All or nothing for this call: when extra or
// an event fails, neither is kept.
func (l *SQLiteLog) RecordWith(ctx context.Context, events []Event, extra TxFunc) error {
	if err := checkBatch(events); err != nil {
		return err
	}
	if _, err := l.write(ctx, events, extra); err != nil {
		return fmt.Errorf("audit: record batch: %w", err)
	}
	return nil
}

// Append queues events to be recorded with the next group commit and
// returns at once; then (when not nil) is called with the outcome. It is
// for events nothing has to wait for, such as mail.relayed once the next
// hop has the mail: they share the commit of the next messages' records
// instead of paying for their own. Flush waits for them.
func (l *SQLiteLog) Append(events []Event, then func(error)) {
	if err := checkBatch(events); err != nil {
		if then != nil {
			then(err)
		}
		return
	}
	w := &groupWrite{ctx: context.Background(), events: events, async: true, then: then,
		done: make(chan struct{}), lead: make(chan struct{})}
	l.groupMu.Lock()
	l.group.queue = append(l.group.queue, w)
	lead := !l.group.leading
	if lead {
		l.group.leading = true
	}
	l.groupMu.Unlock()
	if lead {
		go l.leadBatch()
	}
}

// Flush returns once every write queued before it is committed (or
// failed); the daemon calls it before exiting.
func (l *SQLiteLog) Flush(ctx context.Context) error {
	_, err := l.write(ctx, nil, nil)
	// Whatever was committed relaxed is made durable now, not a second
	// later (the daemon is about to exit).
	l.syncUnsynced(true)
	return err
}

// DB is the database the log is kept in.
func (l *SQLiteLog) DB() *sql.DB { return l.db }

// write queues one write and waits until its batch committed.
func (l *SQLiteLog) write(ctx context.Context, events []Event, extra TxFunc) ([]Event, error) {
	w := &groupWrite{ctx: ctx, events: events, extra: extra, done: make(chan struct{}), lead: make(chan struct{})}
	l.groupMu.Lock()
	l.group.queue = append(l.group.queue, w)
	lead := !l.group.leading
	if lead {
		l.group.leading = true
	}
	if l.group.wake != nil {
		close(l.group.wake)
		l.group.wake = nil
	}
	l.groupMu.Unlock()
	if !lead {
		select {
		case <-w.done:
			return w.stored, w.err
		case <-w.lead:
		}
	}
	l.leadBatch()
	<-w.done
	return w.stored, w.err
}

// leadBatch runs the queued writes as one transaction, then passes the
// leadership to the first writer still queued (or gives it up).
func (l *SQLiteLog) leadBatch() {
	l.groupMu.Lock()
	asyncOnly := true
	for _, w := range l.group.queue {
		asyncOnly = asyncOnly && w.async
	}
	busy := l.group.last > 1 || time.Since(l.group.lastEnd) < groupBusy
	var wake chan struct{}
	if asyncOnly {
		wake = make(chan struct{})
		l.group.wake = wake
	}
	linger := (busy || asyncOnly) && len(l.group.queue) < maxGroup
	l.groupMu.Unlock()
	switch {
	case asyncOnly:
		t := time.NewTimer(asyncLinger)
		select {
		case <-wake:
			// A writer that waits joined: give it the usual moment
			// for others.
			time.Sleep(groupLinger)
		case <-t.C:
		}
		t.Stop()
		l.groupMu.Lock()
		if l.group.wake == wake {
			l.group.wake = nil
		}
		l.groupMu.Unlock()
	case linger:
		time.Sleep(groupLinger)
	}
	l.groupMu.Lock()
	n := min(len(l.group.queue), maxGroup)
	batch := l.group.queue[:n:n]
	l.group.queue = l.group.queue[n:]
	l.group.last = n
	l.group.batches++
	l.groupMu.Unlock()

	l.runBatch(batch)
	for _, w := range batch {
		close(w.done)
		if w.then != nil {
			w.then(w.err)
		}
	}

	l.groupMu.Lock()
	l.group.lastEnd = time.Now()
	switch {
	case len(l.group.queue) == 0:
		l.group.leading = false
	case l.group.queue[0].async:
		// Nobody waits on an Append: lead for it.
		go l.leadBatch()
	default:
		close(l.group.queue[0].lead)
	}
	l.groupMu.Unlock()
}

// runBatch writes batch in one transaction; each write's outcome goes
// into it.
func (l *SQLiteLog) runBatch(batch []*groupWrite) {
	// The transaction outlives any one writer's context: a cancelled
	// writer fails its own statements only.
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	savepoints := len(batch) > 1
	write := l.inWriteTx
	if asyncOnly(batch) {
		write = l.inWriteTxRelaxed
	}
	err := write(ctx, func(conn *sql.Conn) error {
		for _, w := range batch {
			if !savepoints {
				w.err = l.apply(conn, w)
				return w.err
			}
			if _, err := conn.ExecContext(ctx, "SAVEPOINT w"); err != nil {
				return err
			}
			before := l.pending
			if w.err = l.apply(conn, w); w.err != nil {
				if _, err := conn.ExecContext(ctx, "ROLLBACK TO w"); err != nil {
					return err
				}
				// The chain ends where it did before this write.
				l.pending = before
			}
			if _, err := conn.ExecContext(ctx, "RELEASE w"); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		return
	}
	for _, w := range batch {
		if w.err == nil {
			w.err = err
		}
		w.stored = nil
	}
}

// asyncOnly: nobody waits for any write of batch (all are Append's), so
// its commit may be relaxed.
func asyncOnly(batch []*groupWrite) bool {
	for _, w := range batch {
		if !w.async {
			return false
		}
	}
	return true
}

// batchTimeout bounds one batch transaction.
const batchTimeout = 30 * time.Second

func (l *SQLiteLog) apply(conn *sql.Conn, w *groupWrite) error {
	ctx := w.ctx
	if err := ctx.Err(); err != nil {
		return err
	}
	if w.extra != nil {
		if err := w.extra(ctx, conn); err != nil {
			return err
		}
	}
	w.stored = make([]Event, 0, len(w.events))
	for _, e := range w.events {
		stored, err := l.appendTx(ctx, conn, e)
		if err != nil {
			w.stored = nil
			if len(w.events) == 1 {
				return err
			}
			return fmt.Errorf("%s: %w", e.Type, err)
		}
		w.stored = append(w.stored, stored)
	}
	return nil
}
