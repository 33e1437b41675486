package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrNotEmpty refuses Reanchor on a log that still holds events: it is an
// older copy, not a lost one, and restoring the newer copy is the fix.
var ErrNotEmpty = errors.New("audit log still holds events")

// lostHead returns the head the log must continue from after it was
// lost, and the statement that records the loss.
func (s *settings) lostHead(lastSeq int64, reason string) (Head, Event, error) {
	if s.head == nil {
		return Head{}, Event{}, errors.New("no head file configured")
	}
	h, ok, err := ReadHead(s.head.path)
	if err != nil {
		return Head{}, Event{}, err
	}
	if !ok || !h.valid(s.macKey) {
		return Head{}, Event{}, fmt.Errorf("no valid head in %s to continue from", s.head.path)
	}
	if h.Seq <= lastSeq {
		return Head{}, Event{}, fmt.Errorf("the log is not behind its head (log at seq %d, head at seq %d): nothing lost", lastSeq, h.Seq)
	}
	stmt := purgeStatement{removed: h.Seq - lastSeq, before: s.now().In(s.loc).Format("2006-01-02T15:04:05Z07:00"),
		lastSeq: h.Seq, lastHash: h.Hash}
	e := Event{Type: TypeAuditPurged, Actor: ActorSystem, Detail: stmt.detail(),
		Reason: fmt.Sprintf("lost with the store: events seq %d..%d; %s", lastSeq+1, h.Seq, reason)}
	return h, e, nil
}

// Reanchor continues a log that lost all its events (the database was
// replaced by an empty one) from the head recorded outside it: the head
// becomes the anchor, and an audit.purged event states it with reason
// "lost with the store: events seq a..b; <reason>". Verify then accepts the
// chain from there, and no sequence number is given out twice.
func (l *SQLiteLog) Reanchor(ctx context.Context, reason string) (Event, error) {
	var stored Event
	err := l.inWriteTx(ctx, func(conn *sql.Conn) error {
		var n int64
		if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_events`).Scan(&n); err != nil {
			return err
		}
		lastSeq, _, err := chainHead(ctx, conn)
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%w up to seq %d", ErrNotEmpty, lastSeq)
		}
		h, e, err := l.lostHead(lastSeq, reason)
		if err != nil {
			return err
		}
		if _, err := conn.ExecContext(ctx, `INSERT INTO audit_anchor (id, seq, hash) VALUES (1, ?, ?)
			ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, h.Seq, h.Hash); err != nil {
			return fmt.Errorf("store anchor: %w", err)
		}
		stored, err = l.appendTx(ctx, conn, e)
		return err
	})
	if err != nil {
		return Event{}, fmt.Errorf("audit: reanchor: %w", err)
	}
	return stored, nil
}

// Reanchor is SQLiteLog.Reanchor for a Redis that came back empty.
func (l *RedisLog) Reanchor(ctx context.Context, reason string) (Event, error) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	n, err := l.client.XLen(ctx, l.eventsKey).Result()
	if err != nil {
		return Event{}, fmt.Errorf("audit: reanchor: %w", err)
	}
	from, err := l.readAnchor(ctx, l.client)
	if err != nil {
		return Event{}, fmt.Errorf("audit: reanchor: %w", err)
	}
	if n > 0 {
		return Event{}, fmt.Errorf("audit: reanchor: %w (%d in the stream)", ErrNotEmpty, n)
	}
	h, e, err := l.lostHead(from.seq, reason)
	if err != nil {
		return Event{}, fmt.Errorf("audit: reanchor: %w", err)
	}
	move := &anchorMove{from: from, to: redisAnchor{anchor: anchor{seq: h.Seq, hash: h.Hash, set: true}, floor: from.floor}}
	stored, err := l.appendEvent(ctx, e, move)
	if err != nil {
		return Event{}, fmt.Errorf("audit: reanchor: %w", err)
	}
	return stored, nil
}
