package audit

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	_ "modernc.org/sqlite"

	"github.com/attachgate/attachgate/redistest"
)

// testLog is what the behavioural tests need from a backend: the Log API
// and record, which returns the event as stored.
type testLog interface {
	Log
	record(ctx context.Context, e Event) (Event, error)
}

// rawLog reaches under a log to what it stored, as someone with write
// access to the database or to Redis could.
type rawLog interface {
	// rewrite passes every stored event to edit in seq order and stores
	// what edit leaves; edit returns false to delete the event.
	rewrite(tb testing.TB, edit func(r *storedRow) bool)
	// setAnchor overwrites the purge anchor's seq and hash.
	setAnchor(tb testing.TB, seq int64, hash string)
	// events lists the events in the log (seq, time in the log's zone,
	// type, detail, hash) in seq order.
	events(tb testing.TB) []Event
}

// openedLog is a log under test with its raw access.
type openedLog struct {
	testLog
	raw rawLog
	// twin opens a second handle on the same storage through its own
	// connection, as a second process or gateway instance has.
	twin func(tb testing.TB, opts Options) testLog
}

// backend opens new, empty logs of one kind.
type backend struct {
	name string
	open func(tb testing.TB, opts Options) *openedLog
}

// forEachBackend runs fn as the subtests "sqlite" and "redis", so one
// behavioural suite covers both. The redis subtest starts one redis-server
// for everything fn opens; each log gets its own key prefix on it.
func forEachBackend(t *testing.T, fn func(t *testing.T, be backend)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, sqliteBackend()) })
	t.Run("redis", func(t *testing.T) { fn(t, redisBackend(redistest.Start(t))) })
}

// openTestDB opens a fresh database the way package store does.
func openTestDB(tb testing.TB) (*sql.DB, string) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "attachgate.db")
	return openDBAt(tb, path), path
}

func openDBAt(tb testing.TB, path string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		tb.Fatalf("open %s: %v", path, err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func sqliteBackend() backend {
	return backend{name: "sqlite", open: func(tb testing.TB, opts Options) *openedLog {
		tb.Helper()
		db, path := openTestDB(tb)
		l, err := NewSQLite(db, opts)
		if err != nil {
			tb.Fatalf("NewSQLite: %v", err)
		}
		return &openedLog{
			testLog: l,
			raw:     sqliteRaw{db: db, loc: l.loc},
			twin: func(tb testing.TB, opts Options) testLog {
				tb.Helper()
				twin, err := NewSQLite(openDBAt(tb, path), opts)
				if err != nil {
					tb.Fatalf("NewSQLite: %v", err)
				}
				return twin
			},
		}
	}}
}

// redisPrefixes gives every Redis log of a test run its own key space.
var redisPrefixes atomic.Int64

func redisBackend(srv *redistest.Server) backend {
	newClient := func(tb testing.TB) redis.UniversalClient {
		tb.Helper()
		opts, err := redis.ParseURL(srv.URL())
		if err != nil {
			tb.Fatal(err)
		}
		opts.MaxRetries = -1
		c := redis.NewClient(opts)
		tb.Cleanup(func() { c.Close() })
		return c
	}
	return backend{name: "redis", open: func(tb testing.TB, opts Options) *openedLog {
		tb.Helper()
		prefix := fmt.Sprintf("audit%d:", redisPrefixes.Add(1))
		l, err := NewRedis(newClient(tb), prefix, opts)
		if err != nil {
			tb.Fatalf("NewRedis: %v", err)
		}
		return &openedLog{
			testLog: l,
			raw:     redisRaw{l: l},
			twin: func(tb testing.TB, opts Options) testLog {
				tb.Helper()
				twin, err := NewRedis(newClient(tb), prefix, opts)
				if err != nil {
					tb.Fatalf("NewRedis: %v", err)
				}
				return twin
			},
		}
	}}
}

// sqliteRaw edits the tables directly.
type sqliteRaw struct {
	db  *sql.DB
	loc *time.Location
}

func (r sqliteRaw) rewrite(tb testing.TB, edit func(r *storedRow) bool) {
	tb.Helper()
	rows, err := r.db.Query("SELECT " + eventColumns + " FROM audit_events ORDER BY seq")
	if err != nil {
		tb.Fatal(err)
	}
	var stored []*storedRow
	for rows.Next() {
		row := &storedRow{}
		if err := rows.Scan(row.scanDest()...); err != nil {
			tb.Fatal(err)
		}
		row.Recipients = append(sql.RawBytes(nil), row.Recipients...) // RawBytes dies with Next
		stored = append(stored, row)
	}
	if err := rows.Close(); err != nil {
		tb.Fatal(err)
	}
	tx, err := r.db.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`DELETE FROM audit_events`); err != nil {
		tb.Fatal(err)
	}
	for _, row := range stored {
		if !edit(row) {
			continue
		}
		_, err := tx.Exec(insertEvent, row.Seq, row.TimeNS, row.Type, row.Actor, row.ClientAddr, row.UserAgent,
			row.AuthUser, row.Helo, row.MessageID, row.HeaderID, row.Sender, string(row.Recipients), row.Size,
			row.FileID, row.FileName, row.ContentType, row.SHA256, row.LinkID, row.Expires, row.Reason,
			row.Reply, row.Detail, row.PrevHash, row.Hash, row.MAC)
		if err != nil {
			tb.Fatalf("rewrite seq %d: %v", row.Seq, err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
}

func (r sqliteRaw) setAnchor(tb testing.TB, seq int64, hash string) {
	tb.Helper()
	_, err := r.db.Exec(`INSERT INTO audit_anchor (id, seq, hash) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, seq, hash)
	if err != nil {
		tb.Fatal(err)
	}
}

func (r sqliteRaw) events(tb testing.TB) []Event {
	tb.Helper()
	rows, err := r.db.Query(`SELECT seq, time_ns, type, detail, hash FROM audit_events ORDER BY seq`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var ns int64
		if err := rows.Scan(&e.Seq, &ns, &e.Type, &e.Detail, &e.Hash); err != nil {
			tb.Fatal(err)
		}
		e.Time = time.Unix(0, ns).In(r.loc)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// redisRaw rewrites the stream: entries cannot be edited in place, but
// anyone who can write to Redis can delete the stream and add forged
// entries under the same IDs.
type redisRaw struct{ l *RedisLog }

func (r redisRaw) rewrite(tb testing.TB, edit func(r *storedRow) bool) {
	tb.Helper()
	ctx := context.Background()
	entries, err := r.l.client.XRange(ctx, r.l.eventsKey, "-", "+").Result()
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.l.client.Del(ctx, r.l.eventsKey).Err(); err != nil {
		tb.Fatal(err)
	}
	for _, m := range entries {
		var row storedRow
		if err := rowFromEntry(m, &row); err != nil {
			tb.Fatal(err)
		}
		if !edit(&row) {
			continue
		}
		values := []any{
			"seq", row.Seq, "time_ns", row.TimeNS, "type", row.Type, "actor", row.Actor,
			"client_addr", row.ClientAddr, "user_agent", row.UserAgent, "auth_user", row.AuthUser,
			"helo", row.Helo, "message_id", row.MessageID, "header_id", row.HeaderID,
			"sender", row.Sender, "recipients", []byte(row.Recipients), "size", row.Size,
			"file_id", row.FileID, "file_name", row.FileName, "content_type", row.ContentType,
			"sha256", row.SHA256, "link_id", row.LinkID, "expires", row.Expires,
			"reason", row.Reason, "reply", row.Reply, "detail", row.Detail,
			"prev_hash", row.PrevHash, "hash", row.Hash, "mac", row.MAC,
		}
		if err := r.l.client.XAdd(ctx, &redis.XAddArgs{Stream: r.l.eventsKey, ID: m.ID, Values: values}).Err(); err != nil {
			tb.Fatalf("rewrite seq %d: %v", row.Seq, err)
		}
	}
}

func (r redisRaw) setAnchor(tb testing.TB, seq int64, hash string) {
	tb.Helper()
	if err := r.l.client.HSet(context.Background(), r.l.anchorKey, "seq", seq, "hash", hash).Err(); err != nil {
		tb.Fatal(err)
	}
}

func (r redisRaw) events(tb testing.TB) []Event {
	tb.Helper()
	ctx := context.Background()
	a, err := r.l.readAnchor(ctx, r.l.client)
	if err != nil {
		tb.Fatal(err)
	}
	var out []Event
	err = r.l.scan(ctx, a.start(), func(_ string, row *storedRow) (bool, error) {
		out = append(out, Event{Seq: row.Seq, Time: time.Unix(0, row.TimeNS).In(r.l.loc),
			Type: EventType(row.Type), Detail: row.Detail, Hash: row.Hash})
		return true, nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// fixedClock is a settable clock for Options.Now.
type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time { return c.t }

func tokyo(tb testing.TB) *time.Location {
	tb.Helper()
	loc, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		tb.Fatalf("load Asia/Tokyo: %v", err)
	}
	return loc
}

func mustRecord(tb testing.TB, l testLog, e Event) Event {
	tb.Helper()
	stored, err := l.record(context.Background(), e)
	if err != nil {
		tb.Fatalf("record %+v: %v", e, err)
	}
	return stored
}

func mustVerifyOK(tb testing.TB, l Log) VerifyResult {
	tb.Helper()
	res, err := l.Verify(context.Background(), nil)
	if err != nil {
		tb.Fatalf("Verify: %v", err)
	}
	if !res.OK() {
		tb.Fatalf("Verify: %s", res)
	}
	return res
}
