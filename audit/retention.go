package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Purge deletes the events dated before RetentionCutoff and returns how
// many it deleted. In the same transaction it stores the last deleted event
// as the chain anchor and appends an audit.purged event (actor "system")
// whose Detail states the count and that event's seq and hash, so Verify
// still checks the remaining chain end to end. A purge that deletes
// nothing records nothing.
//
// Only a prefix of the chain can go, or the rest would not link up: an
// event within retention stops the purge even if older-dated events follow
// it (possible only with caller-supplied times or clock skew between
// processes); those go in a later purge.
func (l *SQLiteLog) Purge(ctx context.Context) (int64, error) {
	cutoff := l.RetentionCutoff()
	var removed int64
	err := l.inWriteTx(ctx, func(conn *sql.Conn) error {
		var err error
		removed, err = l.purgeTx(ctx, conn, cutoff)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("audit: purge before %s: %w", cutoff.Format(time.RFC3339), err)
	}
	return removed, nil
}

func (l *SQLiteLog) purgeTx(ctx context.Context, conn *sql.Conn, cutoff time.Time) (int64, error) {
	var keepFrom sql.NullInt64
	err := conn.QueryRowContext(ctx, `SELECT MIN(seq) FROM audit_events WHERE time_ns >= ?`,
		clampNanos(cutoff)).Scan(&keepFrom)
	if err != nil {
		return 0, fmt.Errorf("find first kept event: %w", err)
	}
	lastRemoved := `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`
	var args []any
	if keepFrom.Valid {
		lastRemoved = `SELECT seq, hash FROM audit_events WHERE seq < ? ORDER BY seq DESC LIMIT 1`
		args = append(args, keepFrom.Int64)
	}
	var stmt purgeStatement
	err = conn.QueryRowContext(ctx, lastRemoved, args...).Scan(&stmt.lastSeq, &stmt.lastHash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find last removed event: %w", err)
	}

	res, err := conn.ExecContext(ctx, `DELETE FROM audit_events WHERE seq <= ?`, stmt.lastSeq)
	if err != nil {
		return 0, fmt.Errorf("delete events up to seq %d: %w", stmt.lastSeq, err)
	}
	if stmt.removed, err = res.RowsAffected(); err != nil {
		return 0, fmt.Errorf("count deleted events: %w", err)
	}
	_, err = conn.ExecContext(ctx, `INSERT INTO audit_anchor (id, seq, hash) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`,
		stmt.lastSeq, stmt.lastHash)
	if err != nil {
		return 0, fmt.Errorf("store anchor seq %d: %w", stmt.lastSeq, err)
	}
	stmt.before = cutoff.Format(time.RFC3339)
	_, err = l.appendTx(ctx, conn, Event{
		Type:   TypeAuditPurged,
		Actor:  ActorSystem,
		Detail: stmt.detail(),
	})
	if err != nil {
		return 0, fmt.Errorf("record purge: %w", err)
	}
	return stmt.removed, nil
}

// RunRetention purges at once and then every interval (daily when every
// is not positive) until ctx is done. Results and failures go to the
// Options.Logger; a failed purge is retried at the next tick, and each
// successful one catches up on everything that expired meanwhile.
func (l *SQLiteLog) RunRetention(ctx context.Context, every time.Duration) {
	l.runRetention(ctx, every, l.Purge)
}

// purgeStatement is what an audit.purged event states in its Detail, as
// space-separated key=value pairs:
//
//	removed=120 before=2026-08-28T00:00:00+09:00 last_seq=4711 last_hash=9f86...
type purgeStatement struct {
	removed  int64
	before   string
	lastSeq  int64
	lastHash string
}

func (p purgeStatement) detail() string {
	return fmt.Sprintf("removed=%d before=%s last_seq=%d last_hash=%s", p.removed, p.before, p.lastSeq, p.lastHash)
}

// String is the part of the statement Verify compares with the anchor.
func (p purgeStatement) String() string {
	return fmt.Sprintf("last_seq=%d last_hash=%s", p.lastSeq, p.lastHash)
}

func parsePurgeDetail(detail string) (purgeStatement, error) {
	var p purgeStatement
	var err error
	for _, field := range strings.Fields(detail) {
		key, value, _ := strings.Cut(field, "=")
		switch key {
		case "removed":
			p.removed, err = strconv.ParseInt(value, 10, 64)
		case "before":
			p.before = value
		case "last_seq":
			p.lastSeq, err = strconv.ParseInt(value, 10, 64)
		case "last_hash":
			p.lastHash = value
		}
		if err != nil {
			return purgeStatement{}, fmt.Errorf("purge detail %q: %s: %w", detail, key, err)
		}
	}
	return p, nil
}
