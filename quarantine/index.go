package quarantine

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/store"
)

// index records held items: the SQLite database (sqliteIndex) or Redis
// (redisIndex). The blobs live in storage.dir/quarantine either way.
type index interface {
	insert(ctx context.Context, it Item) error
	// get returns the item or an error wrapping ErrNotFound.
	get(ctx context.Context, id string) (Item, error)
	// update rewrites the fields a release attempt changes (To,
	// ReleaseAt, Attempts, LastError, LastAttemptAt, FirstFailedAt,
	// ReleasedBy, Failures); ErrNotFound when the item is gone.
	update(ctx context.Context, it Item) error
	// remove deletes the record; ErrNotFound when there is none.
	remove(ctx context.Context, id string) error
	list(ctx context.Context) ([]Item, error)
	page(ctx context.Context, after Cursor, limit int) ([]Item, bool, error)
	// due lists the IDs whose release_at is at or before now, earliest
	// first.
	due(ctx context.Context, now time.Time) ([]string, error)
	// nextDue is the earliest release_at.
	nextDue(ctx context.Context) (time.Time, bool, error)
	// expired lists the IDs no release is pending for (release_at unset)
	// held before before.
	expired(ctx context.Context, before time.Time) ([]string, error)
	// claim takes id for this Manager across instances (the in-process
	// busy map covers this process); false when another instance has it.
	claim(ctx context.Context, id string) (bool, error)
	unclaim(id string)
}

// component names the quarantine's schema in schema_version.
const component = "quarantine"

// migrations of the quarantine index; append only.
var migrations = []string{
	`CREATE TABLE quarantine_items (
		id              TEXT PRIMARY KEY,
		header_id       TEXT NOT NULL,
		sender          TEXT NOT NULL,
		recipients      TEXT NOT NULL, -- JSON array
		client_addr     TEXT NOT NULL,
		helo            TEXT NOT NULL,
		auth_user       TEXT NOT NULL,
		tls             INTEGER NOT NULL,
		smtputf8        INTEGER NOT NULL,
		size            INTEGER NOT NULL,
		action          TEXT NOT NULL, -- hold or quarantine
		rule            TEXT NOT NULL,
		held_at         INTEGER NOT NULL, -- unix ns, UTC
		release_at      INTEGER,          -- NULL for quarantine
		key_id          TEXT NOT NULL,
		sha256          TEXT NOT NULL,
		attempts        INTEGER NOT NULL DEFAULT 0,
		last_error      TEXT NOT NULL DEFAULT '',
		last_attempt_at INTEGER
	);
	CREATE INDEX quarantine_items_release ON quarantine_items(release_at);`,
	// The list order, for paging (Page).
	`CREATE INDEX quarantine_items_held ON quarantine_items(held_at, id);`,
	// Per-recipient release: who decided the release, when retries began,
	// each pending recipient's last refusal (JSON object).
	`ALTER TABLE quarantine_items ADD COLUMN released_by TEXT NOT NULL DEFAULT '';
	ALTER TABLE quarantine_items ADD COLUMN first_failed_at INTEGER;
	ALTER TABLE quarantine_items ADD COLUMN failures TEXT NOT NULL DEFAULT '{}';`,
	// Claims across processes (the CLI beside the daemon): one row per
	// item being worked on, owned until a lease ends.
	`CREATE TABLE quarantine_claims (
		id    TEXT PRIMARY KEY,
		owner TEXT NOT NULL,
		until INTEGER NOT NULL -- unix ns
	);`,
}

type sqliteIndex struct {
	db     *sql.DB
	leases *leases
}

func openSQLiteIndex(ctx context.Context, db *sql.DB) (*sqliteIndex, error) {
	if err := store.Migrate(ctx, db, component, migrations); err != nil {
		return nil, err
	}
	return &sqliteIndex{db: db, leases: newLeases()}, nil
}

const columns = `id, header_id, sender, recipients, client_addr, helo, auth_user, tls, smtputf8, size,
	action, rule, held_at, release_at, key_id, sha256, attempts, last_error, last_attempt_at,
	released_by, first_failed_at, failures`

func (x *sqliteIndex) insert(ctx context.Context, it Item) error {
	rcpts, failures, err := encodeLists(it)
	if err != nil {
		return fmt.Errorf("quarantine: hold %s: %w", it.ID, err)
	}
	_, err = x.db.ExecContext(ctx, `INSERT INTO quarantine_items (`+columns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		it.ID, it.HeaderID, it.From, rcpts, it.ClientAddr, it.Helo, it.AuthUser, it.TLS, it.UTF8, it.Size,
		string(it.Action), it.Rule, it.HeldAt.UnixNano(), nullNanos(it.ReleaseAt), it.KeyID, it.SHA256,
		it.Attempts, it.LastError, nullNanos(it.LastAttemptAt), it.ReleasedBy, nullNanos(it.FirstFailedAt), failures)
	if err != nil {
		return fmt.Errorf("quarantine: hold %s: record: %w", it.ID, err)
	}
	return nil
}

func (x *sqliteIndex) update(ctx context.Context, it Item) error {
	rcpts, failures, err := encodeLists(it)
	if err != nil {
		return fmt.Errorf("quarantine: update %s: %w", it.ID, err)
	}
	res, err := x.db.ExecContext(ctx, `UPDATE quarantine_items SET recipients = ?, release_at = ?, attempts = ?,
		last_error = ?, last_attempt_at = ?, released_by = ?, first_failed_at = ?, failures = ? WHERE id = ?`,
		rcpts, nullNanos(it.ReleaseAt), it.Attempts, it.LastError, nullNanos(it.LastAttemptAt), it.ReleasedBy,
		nullNanos(it.FirstFailedAt), failures, it.ID)
	if err != nil {
		return fmt.Errorf("quarantine: update %s: %w", it.ID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("update %s: %w", it.ID, ErrNotFound)
	}
	return nil
}

func (x *sqliteIndex) remove(ctx context.Context, id string) error {
	res, err := x.db.ExecContext(ctx, `DELETE FROM quarantine_items WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("quarantine: delete %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("delete %s: %w", id, ErrNotFound)
	}
	return nil
}

func (x *sqliteIndex) get(ctx context.Context, id string) (Item, error) {
	row := x.db.QueryRowContext(ctx, `SELECT `+columns+` FROM quarantine_items WHERE id = ?`, id)
	it, err := scanItem(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return Item{}, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Item{}, fmt.Errorf("quarantine: get %s: %w", id, err)
	}
	return it, nil
}

func (x *sqliteIndex) list(ctx context.Context) ([]Item, error) {
	rows, err := x.db.QueryContext(ctx, `SELECT `+columns+` FROM quarantine_items ORDER BY held_at, id`)
	if err != nil {
		return nil, fmt.Errorf("quarantine: list: %w", err)
	}
	items, err := scanItems(rows)
	if err != nil {
		return nil, fmt.Errorf("quarantine: list: %w", err)
	}
	return items, nil
}

func (x *sqliteIndex) page(ctx context.Context, after Cursor, limit int) ([]Item, bool, error) {
	var (
		rows *sql.Rows
		err  error
	)
	if after.ID == "" {
		rows, err = x.db.QueryContext(ctx, `SELECT `+columns+` FROM quarantine_items
			ORDER BY held_at, id LIMIT ?`, limit+1)
	} else {
		rows, err = x.db.QueryContext(ctx, `SELECT `+columns+` FROM quarantine_items
			WHERE (held_at, id) > (?, ?) ORDER BY held_at, id LIMIT ?`, after.HeldAt.UnixNano(), after.ID, limit+1)
	}
	if err != nil {
		return nil, false, fmt.Errorf("quarantine: page: %w", err)
	}
	items, err := scanItems(rows)
	if err != nil {
		return nil, false, fmt.Errorf("quarantine: page: %w", err)
	}
	if len(items) > limit {
		return items[:limit], true, nil
	}
	return items, false, nil
}

func (x *sqliteIndex) due(ctx context.Context, now time.Time) ([]string, error) {
	return x.ids(ctx, `SELECT id FROM quarantine_items
		WHERE release_at IS NOT NULL AND release_at <= ? ORDER BY release_at, id`, now.UnixNano())
}

func (x *sqliteIndex) expired(ctx context.Context, before time.Time) ([]string, error) {
	return x.ids(ctx, `SELECT id FROM quarantine_items
		WHERE release_at IS NULL AND held_at < ? ORDER BY held_at, id`, before.UnixNano())
}

func (x *sqliteIndex) ids(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := x.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (x *sqliteIndex) nextDue(ctx context.Context) (time.Time, bool, error) {
	var ns sql.NullInt64
	err := x.db.QueryRowContext(ctx, `SELECT MIN(release_at) FROM quarantine_items WHERE release_at IS NOT NULL`).Scan(&ns)
	if err != nil || !ns.Valid {
		return time.Time{}, false, err
	}
	return time.Unix(0, ns.Int64), true, nil
}

// claim takes a row in quarantine_claims, or an expired one: the daemon
// and a CLI command on the same database exclude each other.
func (x *sqliteIndex) claim(ctx context.Context, id string) (bool, error) {
	now := time.Now()
	res, err := x.db.ExecContext(ctx, `INSERT INTO quarantine_claims (id, owner, until) VALUES (?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET owner = excluded.owner, until = excluded.until
		WHERE quarantine_claims.until < ?`, id, x.leases.token, now.Add(x.leases.lease).UnixNano(), now.UnixNano())
	if err != nil {
		return false, fmt.Errorf("claim %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	x.leases.keep(id, func(ctx context.Context) {
		x.db.ExecContext(ctx, `UPDATE quarantine_claims SET until = ? WHERE id = ? AND owner = ?`,
			time.Now().Add(x.leases.lease).UnixNano(), id, x.leases.token)
	})
	return true, nil
}

func (x *sqliteIndex) unclaim(id string) {
	x.leases.drop(id)
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	x.db.ExecContext(ctx, `DELETE FROM quarantine_claims WHERE id = ? AND owner = ?`, id, x.leases.token)
}

// leases keeps this Manager's claims alive: a claim lasts lease and is
// renewed every third of it while held, so a process that dies holding
// one loses it soon, and a long release keeps it.
type leases struct {
	token string // this Manager's owner token
	lease time.Duration

	mu    sync.Mutex
	stops map[string]chan struct{}
}

// claimLease is how long a claim outlives a process that died holding it.
const claimLease = 30 * time.Second

func newLeases() *leases {
	var b [16]byte
	rand.Read(b[:])
	return &leases{token: hex.EncodeToString(b[:]), lease: claimLease, stops: map[string]chan struct{}{}}
}

// keep runs renew every third of the lease until drop(id).
func (l *leases) keep(id string, renew func(ctx context.Context)) {
	stop := make(chan struct{})
	l.mu.Lock()
	l.stops[id] = stop
	l.mu.Unlock()
	go func() {
		t := time.NewTicker(l.lease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), l.lease/3)
				renew(ctx)
				cancel()
			}
		}
	}()
}

func (l *leases) drop(id string) {
	l.mu.Lock()
	stop := l.stops[id]
	delete(l.stops, id)
	l.mu.Unlock()
	if stop != nil {
		close(stop)
	}
}

func scanItems(rows *sql.Rows) ([]Item, error) {
	defer rows.Close()
	items := []Item{}
	for rows.Next() {
		it, err := scanItem(rows.Scan)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, rows.Err()
}

func scanItem(scan func(...any) error) (Item, error) {
	var (
		it                                      Item
		rcpts, action, failures                 string
		heldAt                                  int64
		releaseAt, lastAttemptAt, firstFailedAt sql.NullInt64
	)
	if err := scan(&it.ID, &it.HeaderID, &it.From, &rcpts, &it.ClientAddr, &it.Helo, &it.AuthUser, &it.TLS, &it.UTF8,
		&it.Size, &action, &it.Rule, &heldAt, &releaseAt, &it.KeyID, &it.SHA256, &it.Attempts, &it.LastError,
		&lastAttemptAt, &it.ReleasedBy, &firstFailedAt, &failures); err != nil {
		return Item{}, err
	}
	if err := decodeLists(&it, rcpts, failures); err != nil {
		return Item{}, err
	}
	it.Action = policies.Action(action)
	it.HeldAt = time.Unix(0, heldAt).UTC()
	it.ReleaseAt = fromNull(releaseAt)
	it.LastAttemptAt = fromNull(lastAttemptAt)
	it.FirstFailedAt = fromNull(firstFailedAt)
	return it, nil
}

// encodeLists is the JSON of it.To and it.Failures.
func encodeLists(it Item) (rcpts, failures string, err error) {
	r, err := json.Marshal(nonNil(it.To))
	if err != nil {
		return "", "", err
	}
	f := it.Failures
	if f == nil {
		f = map[string]Failure{}
	}
	fj, err := json.Marshal(f)
	if err != nil {
		return "", "", err
	}
	return string(r), string(fj), nil
}

func decodeLists(it *Item, rcpts, failures string) error {
	if err := json.Unmarshal([]byte(rcpts), &it.To); err != nil {
		return fmt.Errorf("recipients of %s: %w", it.ID, err)
	}
	if failures != "" && failures != "{}" {
		if err := json.Unmarshal([]byte(failures), &it.Failures); err != nil {
			return fmt.Errorf("failures of %s: %w", it.ID, err)
		}
	}
	return nil
}

func fromNull(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

func nullNanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
