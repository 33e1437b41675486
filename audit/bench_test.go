package audit

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/redistest"
)

// benchEvent is the fixed shape of a bulk-recorded event.
func benchEvent(start time.Time, i int) Event {
	return Event{
		Time:       start.Add(time.Duration(i) * time.Second),
		Type:       TypeDownloadOK,
		Actor:      "web",
		ClientAddr: "203.0.113.5",
		UserAgent:  "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
		Sender:     "alice@example.com",
		Recipients: []string{"bob@example.net", "carol@example.org"},
		Size:       int64(1000 + i),
		FileID:     "0192f5a0-0000-7000-8000-000000000001",
		FileName:   "見積書.pdf",
		SHA256:     "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		LinkID:     "0192f5a0-0000-7000-8000-000000000002",
		Expires:    start.Add(7 * 24 * time.Hour),
	}
}

// bulkRecord appends n events of a fixed shape through the backend's own
// append path, batched: one transaction (SQLite) or pipelines of 1000
// (Redis), without a commit or round trip per event.
func bulkRecord(tb testing.TB, l testLog, n int) {
	tb.Helper()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	var err error
	switch l := l.(type) {
	case *SQLiteLog:
		err = l.inWriteTx(ctx, func(conn *sql.Conn) error {
			for i := range n {
				if _, err := l.appendTx(ctx, conn, benchEvent(start, i)); err != nil {
					return err
				}
			}
			return nil
		})
	case *RedisLog:
		err = redisBulkRecord(ctx, l, start, n)
	default:
		tb.Fatalf("bulk record: unknown log %T", l)
	}
	if err != nil {
		tb.Fatalf("bulk record %d events: %v", n, err)
	}
}

// redisBulkRecord chains n events onto an empty log in pipelines, the
// way appendEvent stores one.
func redisBulkRecord(ctx context.Context, l *RedisLog, start time.Time, n int) error {
	var lastSeq int64
	var lastHash string
	for done := 0; done < n; {
		pipe := l.client.Pipeline()
		for ; done < n && pipe.Len() < 1000; done++ {
			sealed, err := l.seal(benchEvent(start, done), lastSeq, lastHash)
			if err != nil {
				return err
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: l.eventsKey, ID: "*", Values: streamValues(&sealed)})
			lastSeq, lastHash = sealed.Seq, sealed.Hash
		}
		pipe.HSet(ctx, l.headKey, "seq", lastSeq, "hash", lastHash)
		if _, err := pipe.Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkExport exports logs of growing size from each backend.
// allocs/event and B/event staying flat across sizes shows the export
// streams: the cost per event does not depend on how many events there
// are.
func BenchmarkExport(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) backend
	}{
		{"sqlite", func(*testing.B) backend { return sqliteBackend() }},
		{"redis", func(b *testing.B) backend { return redisBackend(redistest.Start(b)) }},
	}
	for _, bk := range backends {
		b.Run(bk.name, func(b *testing.B) {
			be := bk.open(b)
			for _, n := range []int{1_000, 10_000, 100_000} {
				b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
					l := be.open(b, Options{Location: time.UTC})
					bulkRecord(b, l.testLog, n)
					for _, format := range []string{FormatJSONL, FormatCSV} {
						b.Run(format, func(b *testing.B) {
							b.ReportAllocs()
							var before, after runtime.MemStats
							runtime.ReadMemStats(&before)
							for b.Loop() {
								if err := l.Export(context.Background(), Query{}, io.Discard, format, false); err != nil {
									b.Fatal(err)
								}
							}
							runtime.ReadMemStats(&after)
							events := float64(b.N) * float64(n)
							b.ReportMetric(float64(after.Mallocs-before.Mallocs)/events, "allocs/event")
							b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/events, "B/event")
							b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
						})
					}
				})
			}
		})
	}
}

// BenchmarkRecord appends one event at a time, as the daemon does: a
// commit per event on SQLite (synchronous=FULL in the daemon; the test
// database here uses the WAL default), a WATCH/MULTI/EXEC round trip on
// Redis.
func BenchmarkRecord(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchRecord(b, sqliteBackend()) })
	b.Run("redis", func(b *testing.B) { benchRecord(b, redisBackend(redistest.Start(b))) })
}

func benchRecord(b *testing.B, be backend) {
	l := be.open(b, Options{})
	e := benchEvent(time.Now(), 0)
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Record(context.Background(), e); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
