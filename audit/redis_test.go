package audit

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/redistest"
)

func TestNewRedisChecksArguments(t *testing.T) {
	if _, err := NewRedis(nil, "p:", Options{}); err == nil {
		t.Error("nil client accepted")
	}
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	if _, err := NewRedis(client, "p:", Options{Retention: -1}); err == nil {
		t.Error("negative retention accepted")
	}
	l, err := NewRedis(client, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if l.retention != DefaultRetentionDays || l.loc != time.Local || l.eventsKey != "attachgate:audit:events" {
		t.Errorf("defaults: retention %d, loc %v, key %s", l.retention, l.loc, l.eventsKey)
	}
}

// TestRedisExportMatchesSQLite: the same events give the same hashes and
// the same export bytes on both backends.
func TestRedisExportMatchesSQLite(t *testing.T) {
	sqliteLog := exportFixture(t, sqliteBackend())
	redisLog := exportFixture(t, redisBackend(redistest.Start(t)))
	for _, format := range []string{FormatJSONL, FormatCSV} {
		for _, q := range []Query{{}, dayRange(t, sqliteLog, "2026-11-25", "2026-11-25"), {Recipient: "BOB@example.net"}} {
			want := exportString(t, sqliteLog, q, format, format == FormatCSV)
			got := exportString(t, redisLog, q, format, format == FormatCSV)
			if got != want {
				t.Errorf("%s export of %+v differs:\nredis:  %q\nsqlite: %q", format, q, got, want)
			}
		}
	}
}

// TestRedisPurgeTrimsTheStream: a purge removes the entries from the
// stream itself (exact XTRIM), not only from what readers see.
func TestRedisPurgeTrimsTheStream(t *testing.T) {
	be := redisBackend(redistest.Start(t))
	clock := &fixedClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	l := be.open(t, Options{Now: clock.Now, Location: time.UTC, Retention: 7})
	rl := l.testLog.(*RedisLog)
	ctx := context.Background()
	for i := range 700 { // more than one stream node, so approximate trimming alone would keep some
		mustRecord(t, l, Event{Type: TypeMailReceived, Time: time.Date(2026, 11, 1, 0, 0, i, 0, time.UTC)})
	}
	for range 5 {
		mustRecord(t, l, Event{Type: TypeMailReceived})
	}
	removed, err := l.Purge(ctx)
	if err != nil || removed != 700 {
		t.Fatalf("purge: removed %d, %v; want 700", removed, err)
	}
	if n, err := rl.client.XLen(ctx, rl.eventsKey).Result(); err != nil || n != 6 {
		t.Errorf("stream length after purge = %d, %v; want the 5 kept events and the purge event", n, err)
	}
	a, err := rl.readAnchor(ctx, rl.client)
	if err != nil || a.seq != 700 || a.floor == "" {
		t.Errorf("anchor = %+v, %v; want seq 700 with a floor", a, err)
	}
	res := mustVerifyOK(t, l)
	if res.Events != 6 || res.FirstSeq != 701 {
		t.Errorf("verify after purge: %s", res)
	}
}

// TestRedisRecordPurgeAndVerifyConcurrently: two instances record while
// both purge and a third verifies; the chain stays whole.
func TestRedisRecordPurgeAndVerifyConcurrently(t *testing.T) {
	be := redisBackend(redistest.Start(t))
	clock := &fixedClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	opts := Options{Now: clock.Now, Location: time.UTC, Retention: 7}
	a := be.open(t, opts)
	b := a.twin(t, opts)
	old := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	for range 50 {
		mustRecord(t, a, Event{Type: TypeMailReceived, Time: old})
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, l := range []testLog{a, b} {
		wg.Go(func() {
			for i := range 40 {
				if _, err := l.record(ctx, Event{Type: TypeDownloadOK, Time: old.Add(time.Duration(i) * time.Hour)}); err != nil {
					t.Errorf("record: %v", err)
					return
				}
				if i%10 == 0 {
					if _, err := l.Purge(ctx); err != nil {
						t.Errorf("purge: %v", err)
						return
					}
				}
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if _, err := b.Verify(ctx, nil); err != nil {
				t.Errorf("verify during writes: %v", err)
			}
		}
	})
	wg.Wait()
	if _, err := a.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	res := mustVerifyOK(t, b)
	if !res.Anchored || res.LastSeq < 50+80 {
		t.Errorf("after concurrent purges: %s", res)
	}
}

// TestRedisLogSurvivesRestart: with the append-only file on, the log and
// its chain head come back after a Redis restart and the chain goes on.
func TestRedisLogSurvivesRestart(t *testing.T) {
	srv := redistest.Start(t)
	l := redisBackend(srv).open(t, Options{})
	for range 3 {
		mustRecord(t, l, Event{Type: TypeMailReceived})
	}
	srv.Stop()
	if err := l.Record(context.Background(), Event{Type: TypeMailReceived}); err == nil {
		t.Fatal("Record succeeded with Redis stopped")
	}
	srv.Restart()
	if e := mustRecord(t, l, Event{Type: TypeMailRelayed}); e.Seq != 4 {
		t.Errorf("seq after restart = %d, want 4", e.Seq)
	}
	var out bytes.Buffer
	if _, err := l.Verify(context.Background(), &out); err != nil || out.String() != "audit chain OK: 4 events, seq 1..4\n" {
		t.Errorf("verify after restart: %q, %v", out.String(), err)
	}
}

// TestTwoInstancesShareTheHeadFile: two gateways on one Redis and one
// storage directory share the head file. One appending and moving the
// head on between the other's read of the chain head and its own check
// is a lost race (retried), never "events were lost": under concurrent
// appends no instance may fall into the refusing state.
func TestTwoInstancesShareTheHeadFile(t *testing.T) {
	be := redisBackend(redistest.Start(t))
	opts := anchoredOptions(t)
	opts.Location = time.UTC
	a := be.open(t, opts)
	b := a.twin(t, opts)
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, l := range []testLog{a, b, a, b} {
		wg.Go(func() {
			for range 60 {
				if _, err := l.record(ctx, Event{Type: TypeMailRelayed}); err != nil {
					t.Errorf("record: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	res := mustVerifyOK(t, b)
	if res.LastSeq != 240 {
		t.Errorf("log ends at seq %d, want 240", res.LastSeq)
	}
	h, ok, err := ReadHead(opts.HeadPath)
	if err != nil || !ok || h.Seq != 240 {
		t.Errorf("head file: %+v %v %v, want seq 240", h, ok, err)
	}
}
