package audit

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// DefaultRetentionDays is how many local days, today included, the log
// keeps: the service's commitment is 90.
const DefaultRetentionDays = 90

// Options configures a SQLiteLog or a RedisLog. The zero value is usable.
type Options struct {
	// Now is the clock; time.Now when nil. Tests inject a fixed clock.
	Now func() time.Time
	// Location is the zone of exported times and of the day boundaries of
	// date ranges and retention; time.Local when nil.
	Location *time.Location
	// Retention is the number of local days kept, today included;
	// DefaultRetentionDays when 0.
	Retention int
	// Logger receives RunRetention's reports; slog.Default() when nil.
	Logger *slog.Logger
	// MACKey keys the HMAC each event carries (see AuditKey); nil: none.
	MACKey []byte
	// HeadPath is the file outside the database where the signed head is
	// recorded after every commit and which Verify compares the log with;
	// "" for none. Needs MACKey.
	HeadPath string
}

// SQLiteLog is the audit log kept in the shared attachgate SQLite database,
// in the tables audit_events and audit_anchor. Several processes may use the
// same database at once (the daemon records, the CLI exports and verifies):
// every write is one BEGIN IMMEDIATE transaction, so the chain stays linear
// across processes. The database should be opened with a busy_timeout (as
// package store does); without one, writers retry on SQLITE_BUSY themselves.
type SQLiteLog struct {
	settings
	db *sql.DB

	// pending is the newest event of the write transaction in progress,
	// recorded as the head once it commits. Guarded by writeMu.
	pending *Head

	// writeMu queues this process's writers here instead of in SQLite's
	// busy handler, which polls with sleeps; BEGIN IMMEDIATE still orders
	// writers of other processes.
	writeMu sync.Mutex

	// groupMu guards group, the writers waiting for a shared commit
	// (groupcommit.go).
	groupMu sync.Mutex
	group   groupState

	// unsynced is set by a relaxed commit (inWriteTxRelaxed) and cleared
	// by the next durable one; syncTimer makes it durable when no such
	// commit follows soon. Guarded by writeMu.
	unsynced  bool
	syncTimer *time.Timer
	// unsyncedSince is when the oldest relaxed commit not yet synced
	// was made: the timer syncs relaxedSyncDelay after it, so under a
	// steady load, where every message's durable commit syncs the
	// relaxed ones before it, no extra sync is needed at all.
	unsyncedSince time.Time
	// walPath is the database's write-ahead log, found once by syncWAL
	// ("" without one).
	walOnce sync.Once
	walPath string
	// walSyncs counts the syncs of relaxed commits (guarded by writeMu).
	walSyncs int
}

// relaxedSyncDelay bounds how long a relaxed commit stays exposed to power
// loss when no durable commit follows it.
const relaxedSyncDelay = time.Second

var _ Recorder = (*SQLiteLog)(nil)

// Columns of audit_events. time_ns is UTC Unix nanoseconds, an integer so
// date ranges are index range scans (RFC 3339 text with a trimmed fraction
// does not sort). expires is the canonical RFC 3339 text ("" when unset), as
// it is never filtered on and must not be limited to the int64 range.
// recipients is a JSON array of strings.
var schemaStatements = []string{
	`CREATE TABLE IF NOT EXISTS audit_events (
		seq          INTEGER PRIMARY KEY,
		time_ns      INTEGER NOT NULL,
		type         TEXT NOT NULL,
		actor        TEXT NOT NULL,
		client_addr  TEXT NOT NULL,
		user_agent   TEXT NOT NULL,
		auth_user    TEXT NOT NULL,
		helo         TEXT NOT NULL,
		message_id   TEXT NOT NULL,
		header_id    TEXT NOT NULL,
		sender       TEXT NOT NULL,
		recipients   TEXT NOT NULL,
		size         INTEGER NOT NULL,
		file_id      TEXT NOT NULL,
		file_name    TEXT NOT NULL,
		content_type TEXT NOT NULL,
		sha256       TEXT NOT NULL,
		link_id      TEXT NOT NULL,
		expires      TEXT NOT NULL,
		reason       TEXT NOT NULL,
		reply        TEXT NOT NULL,
		detail       TEXT NOT NULL,
		prev_hash    TEXT NOT NULL,
		hash         TEXT NOT NULL,
		mac          TEXT NOT NULL DEFAULT ''
	)`,
	`CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time_ns)`,
	// One row at most: the last event a retention purge removed. The first
	// remaining event must link to it (see Verify).
	`CREATE TABLE IF NOT EXISTS audit_anchor (
		id   INTEGER PRIMARY KEY CHECK (id = 1),
		seq  INTEGER NOT NULL,
		hash TEXT NOT NULL
	)`,
}

const eventColumns = `seq, time_ns, type, actor, client_addr, user_agent,
	auth_user, helo, message_id, header_id, sender, recipients, size, file_id,
	file_name, content_type, sha256, link_id, expires, reason, reply, detail,
	prev_hash, hash, mac`

const insertEvent = `INSERT INTO audit_events (` + eventColumns + `)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// NewSQLite returns the audit log kept in db, creating its tables if
// missing. db is the shared attachgate database; the log does not close it.
func NewSQLite(db *sql.DB, opts Options) (*SQLiteLog, error) {
	if db == nil {
		return nil, errors.New("audit: NewSQLite: nil *sql.DB")
	}
	cfg, err := newSettings(opts)
	if err != nil {
		return nil, err
	}
	l := &SQLiteLog{settings: cfg, db: db}
	err = l.inWriteTx(context.Background(), func(conn *sql.Conn) error {
		for _, stmt := range schemaStatements {
			if _, err := conn.ExecContext(context.Background(), stmt); err != nil {
				return err
			}
		}
		return addMACColumn(context.Background(), conn)
	})
	if err != nil {
		return nil, fmt.Errorf("audit: create tables: %w", err)
	}
	return l, nil
}

// Record appends e. It sets e.Time when zero, and always sets Seq, PrevHash
// and Hash (values the caller put there are ignored). Invalid UTF-8 in
// text fields is stored as U+FFFD.
func (l *SQLiteLog) Record(ctx context.Context, e Event) error {
	_, err := l.record(ctx, e)
	return err
}

// RecordAll appends events in one transaction: one commit (one fsync)
// for all of them, shared with concurrent writers (groupcommit.go), and no
// event of the batch without the others.
func (l *SQLiteLog) RecordAll(ctx context.Context, events []Event) error {
	return l.RecordWith(ctx, events, nil)
}

// record is Record returning the stored event, for tests.
func (l *SQLiteLog) record(ctx context.Context, e Event) (Event, error) {
	if e.Type == "" {
		return Event{}, errors.New("audit: record: event without type")
	}
	stored, err := l.write(ctx, []Event{e}, nil)
	if err != nil {
		return Event{}, fmt.Errorf("audit: record %s: %w", e.Type, err)
	}
	return stored[0], nil
}

// appendTx links e to the head of the chain and inserts it. It must run
// inside inWriteTx, which makes reading the head and inserting atomic.
func (l *SQLiteLog) appendTx(ctx context.Context, conn *sql.Conn, e Event) (Event, error) {
	var lastSeq int64
	var lastHash string
	if h := l.pending; h != nil {
		// This transaction appended already: the chain ends at that
		// event, and the head outside was checked at the first append
		// (no other writer commits while this one holds the write lock).
		lastSeq, lastHash = h.Seq, h.Hash
	} else {
		var err error
		if lastSeq, lastHash, err = chainHead(ctx, conn); err != nil {
			return Event{}, err
		}
		if err := l.head.checkAhead(lastSeq); err != nil {
			return Event{}, err
		}
	}
	sealed, err := l.seal(e, lastSeq, lastHash)
	if err != nil {
		return Event{}, err
	}
	e = sealed.Event
	_, err = conn.ExecContext(ctx, insertEvent,
		e.Seq, sealed.timeNS, e.Type, e.Actor, e.ClientAddr, e.UserAgent,
		e.AuthUser, e.Helo, e.MessageID, e.HeaderID, e.Sender, string(sealed.recipients), e.Size, e.FileID,
		e.FileName, e.ContentType, e.SHA256, e.LinkID, sealed.expires, e.Reason, e.Reply, e.Detail,
		e.PrevHash, e.Hash, e.MAC)
	if err != nil {
		return Event{}, fmt.Errorf("insert seq %d: %w", e.Seq, err)
	}
	l.pending = &Head{Seq: e.Seq, Hash: e.Hash}
	return e, nil
}

// makeValidUTF8 replaces invalid UTF-8 (a client's User-Agent or HELO can
// hold any bytes) with U+FFFD. JSON cannot carry such bytes, so without
// this the hashed and exported text would differ from the stored text and
// the stored recipients would no longer decode to what was hashed.
func (e *Event) makeValidUTF8() {
	e.Type = EventType(strings.ToValidUTF8(string(e.Type), "\uFFFD"))
	for _, f := range []*string{
		&e.Actor, &e.ClientAddr, &e.UserAgent, &e.AuthUser, &e.Helo,
		&e.MessageID, &e.HeaderID, &e.Sender, &e.FileID, &e.FileName,
		&e.ContentType, &e.SHA256, &e.LinkID, &e.Reason, &e.Reply, &e.Detail,
	} {
		*f = strings.ToValidUTF8(*f, "\uFFFD")
	}
	if len(e.Recipients) > 0 {
		valid := make([]string, len(e.Recipients)) // the caller's slice is not ours to change
		for i, r := range e.Recipients {
			valid[i] = strings.ToValidUTF8(r, "\uFFFD")
		}
		e.Recipients = valid
	}
}

// chainHead returns the seq and hash the next event links to: the newest
// event, or the purge anchor when a purge left no event (0 and "" on an
// empty log).
func chainHead(ctx context.Context, conn *sql.Conn) (int64, string, error) {
	var seq int64
	var hash string
	err := conn.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if err == nil {
		return seq, hash, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, "", fmt.Errorf("read chain head: %w", err)
	}
	a, err := readAnchor(ctx, conn)
	if err != nil {
		return 0, "", err
	}
	return a.seq, a.hash, nil
}

type anchor struct {
	seq  int64
	hash string
	set  bool
}

// queryRower is what both *sql.Conn and *sql.Tx offer.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func readAnchor(ctx context.Context, q queryRower) (anchor, error) {
	var a anchor
	err := q.QueryRowContext(ctx, `SELECT seq, hash FROM audit_anchor WHERE id = 1`).Scan(&a.seq, &a.hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return anchor{}, nil
	case err != nil:
		return anchor{}, fmt.Errorf("read purge anchor: %w", err)
	}
	a.set = true
	return a, nil
}

// inWriteTx runs fn inside BEGIN IMMEDIATE on one connection, committing
// when fn succeeds. IMMEDIATE takes the write lock before the first read, so
// two writers (even in two processes) cannot both read the same chain head.
// database/sql's BeginTx cannot ask for IMMEDIATE unless the shared DSN
// says _txlock=immediate, hence the explicit statements on a *sql.Conn.
func (l *SQLiteLog) inWriteTx(ctx context.Context, fn func(conn *sql.Conn) error) (err error) {
	return l.writeTx(ctx, false, fn)
}

// inWriteTxRelaxed is inWriteTx for events nothing waits for (Append's):
// the commit runs with synchronous=NORMAL, so it costs no fsync. In WAL
// mode that commit survives a crash of the process at once (it is in the
// WAL, in the page cache) and power loss once the next durable commit
// syncs the WAL — every message's own commit does — or, when none comes,
// relaxedSyncDelay after the oldest unsynced one, by an fsync of the WAL
// file (syncWAL). The head outside the
// database is not moved past a relaxed commit: after power loss it must
// not claim events the database may have lost.
func (l *SQLiteLog) inWriteTxRelaxed(ctx context.Context, fn func(conn *sql.Conn) error) (err error) {
	return l.writeTx(ctx, true, fn)
}

func (l *SQLiteLog) writeTx(ctx context.Context, relaxed bool, fn func(conn *sql.Conn) error) (err error) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()

	conn, err := l.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("get connection: %w", err)
	}
	defer conn.Close()
	if relaxed {
		if _, err := conn.ExecContext(ctx, "PRAGMA synchronous=NORMAL"); err != nil {
			return fmt.Errorf("relax sync: %w", err)
		}
		defer func() {
			if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA synchronous=FULL"); rerr != nil {
				// A connection left relaxed must not serve durable commits.
				_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			}
		}()
	}

	if err := beginImmediate(ctx, conn); err != nil {
		return err
	}
	l.pending = nil
	committed := false
	defer func() {
		if committed {
			return
		}
		// Roll back even when ctx is done: the connection goes back to
		// the pool and must not carry an open transaction.
		if _, rbErr := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); rbErr != nil {
			// Its state is unknown (SQLite may have rolled back an
			// interrupted statement itself): have database/sql drop it.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	if err := fn(conn); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	committed = true
	if relaxed {
		if !l.unsynced {
			l.unsynced, l.unsyncedSince = true, time.Now()
		}
		if l.syncTimer == nil {
			l.syncTimer = time.AfterFunc(relaxedSyncDelay, l.syncRelaxed)
		}
		return nil
	}
	if h := l.pending; h != nil {
		// This commit wrote events, so it synced the WAL, and with it
		// every relaxed commit before.
		l.unsynced = false
		if l.head != nil {
			l.advanceHead(ctx, h.Seq, h.Hash)
		}
	}
	return nil
}

// syncWAL makes every commit so far durable: one fsync of the database's
// write-ahead log, where relaxed commits wait (what a synchronous=FULL
// commit would have done), or, when the database keeps no WAL file, a
// checkpoint.
func (l *SQLiteLog) syncWAL(ctx context.Context) error {
	l.walOnce.Do(func() {
		var mode string
		if err := l.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			return
		}
		var seq int
		var name, file string
		if err := l.db.QueryRowContext(ctx, "SELECT seq, name, file FROM pragma_database_list WHERE name = 'main'").Scan(&seq, &name, &file); err == nil && file != "" {
			l.walPath = file + "-wal"
		}
	})
	if l.walPath != "" {
		f, err := os.OpenFile(l.walPath, os.O_RDWR, 0)
		if err == nil {
			err = errors.Join(f.Sync(), f.Close())
			if err != nil {
				return fmt.Errorf("sync %s: %w", l.walPath, err)
			}
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sync %s: %w", l.walPath, err)
		}
		// No WAL file: everything is in the database; a checkpoint syncs it.
	}
	_, err := l.db.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
	return err
}

// syncRelaxed makes relaxed commits durable when no durable commit came
// after them: syncWAL fsyncs the WAL file.
func (l *SQLiteLog) syncRelaxed() { l.syncUnsynced(false) }

// syncUnsynced syncs the WAL (syncWAL) when relaxed commits are unsynced:
// now when force (Flush), otherwise once the oldest is relaxedSyncDelay
// old.
func (l *SQLiteLog) syncUnsynced(force bool) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if l.syncTimer != nil {
		l.syncTimer.Stop()
	}
	l.syncTimer = nil
	if !l.unsynced {
		return
	}
	if wait := relaxedSyncDelay - time.Since(l.unsyncedSince); wait > 0 && !force {
		// A durable commit synced what the timer was armed for; the
		// relaxed commits since are younger than the delay.
		l.syncTimer = time.AfterFunc(wait, l.syncRelaxed)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	if err := l.syncWAL(ctx); err != nil {
		// The next relaxed commit tries again; the next durable one
		// syncs them anyway. A closed database (the owner shut down
		// without Flush) has nothing left to sync through: closing it
		// checkpointed the WAL.
		if !strings.Contains(err.Error(), "database is closed") {
			l.logger.Error("audit: sync of relaxed commits failed", "err", err)
		}
		return
	}
	l.unsynced = false
	l.walSyncs++
	// The head may now move to the newest event.
	var seq int64
	var hash string
	if err := l.db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash); err == nil && l.head != nil {
		l.advanceHead(ctx, seq, hash)
	}
}

// addMACColumn adds the mac column to a table created before events
// carried MACs; their rows keep mac "".
func addMACColumn(ctx context.Context, conn *sql.Conn) error {
	var n int
	err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_table_info('audit_events') WHERE name = 'mac'`).Scan(&n)
	if err != nil || n > 0 {
		return err
	}
	_, err = conn.ExecContext(ctx, `ALTER TABLE audit_events ADD COLUMN mac TEXT NOT NULL DEFAULT ''`)
	return err
}

// beginImmediate starts the write transaction. It retries on SQLITE_BUSY
// for a database opened without busy_timeout, where SQLite gives up at once.
func beginImmediate(ctx context.Context, conn *sql.Conn) error {
	const maxWait = 10 * time.Second
	deadline := time.Now().Add(maxWait)
	backoff := time.Millisecond
	for {
		_, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE")
		if err == nil {
			return nil
		}
		if !isBusy(err) || time.Now().After(deadline) {
			return fmt.Errorf("begin immediate: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("begin immediate: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// unixNanos converts t for the time_ns column; false outside int64's range.
func unixNanos(t time.Time) (int64, bool) {
	minT := time.Unix(0, math.MinInt64)
	maxT := time.Unix(0, math.MaxInt64)
	if t.Before(minT) || t.After(maxT) {
		return 0, false
	}
	return t.UnixNano(), true
}

// clampNanos converts a range bound, saturating so a date like 9999-12-31
// is still a valid (empty) range.
func clampNanos(t time.Time) int64 {
	if ns, ok := unixNanos(t); ok {
		return ns
	}
	if t.Before(time.Unix(0, 0)) {
		return math.MinInt64
	}
	return math.MaxInt64
}
