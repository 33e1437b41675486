package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/redistest"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/store/redisstore"
	"github.com/attachgate/attachgate/store/storetest"
)

// prefixCounter gives every store of a test run its own key space on the
// shared server.
var prefixCounter atomic.Int64

func openStore(tb testing.TB, srv *redistest.Server) *redisstore.Store {
	tb.Helper()
	s, err := redisstore.Open(context.Background(), redisstore.Options{
		URL:       srv.URL(),
		KeyPrefix: fmt.Sprintf("t%d:", prefixCounter.Add(1)),
		Timeout:   2 * time.Second,
	})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return s
}

func TestRedisConformance(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openStore(t, srv) })
}

// TestTwoClientsShareOneStore: two Store values on separate connections
// stand in for two gateway instances: what one writes the other reads, a
// revocation on one is seen by the other at once, and a one-time link
// raced from both counts exactly one download.
func TestTwoClientsShareOneStore(t *testing.T) {
	srv := redistest.Start(t)
	a := openStore(t, srv)
	defer a.Close()
	b := redisstore.New(mustClient(t, srv), a.KeyPrefix(), time.Second)
	defer b.Close()
	ctx := context.Background()
	now := time.Now()

	m, files, links := oneFileMessage(t, now, 1)
	if err := a.CreateMessage(ctx, m, files, links); err != nil {
		t.Fatal(err)
	}
	if _, err := b.LinkByTokenHash(ctx, links[0].TokenHash); err != nil {
		t.Fatalf("instance B cannot find A's link: %v", err)
	}

	const racers = 32
	var wg sync.WaitGroup
	var ok atomic.Int64
	start := make(chan struct{})
	for i := range racers {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			<-start
			_, err := s.CountDownload(ctx, links[0].ID, now)
			switch {
			case err == nil:
				ok.Add(1)
			case !errors.Is(err, store.ErrLimit):
				t.Errorf("CountDownload: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 {
		t.Errorf("%d downloads of a one-time link succeeded, want 1", ok.Load())
	}

	m2, files2, links2 := oneFileMessage(t, now, 0)
	if err := a.CreateMessage(ctx, m2, files2, links2); err != nil {
		t.Fatal(err)
	}
	if err := b.RevokeLink(ctx, links2[0].ID, now); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CountDownload(ctx, links2[0].ID, now); !errors.Is(err, store.ErrRevoked) {
		t.Errorf("A after B revoked: %v, want ErrRevoked", err)
	}
}

func mustClient(t *testing.T, srv *redistest.Server) redis.UniversalClient {
	t.Helper()
	c, err := redisstore.NewClient(redisstore.Options{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func oneFileMessage(t testing.TB, now time.Time, maxDownloads int) (store.Message, []store.File, []store.Link) {
	t.Helper()
	_, hash, err := store.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	m := store.Message{ID: store.NewID(), MessageID: "<x@example.com>", Sender: "alice@example.com",
		Recipients: []string{"bob@example.net"}, CreatedAt: now}
	f := store.File{ID: store.NewID(), MessageID: m.ID, Name: "a.pdf", Size: 3, SHA256: "00",
		KeyID: "k1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	l := store.Link{ID: store.NewID(), FileID: f.ID, TokenHash: hash, CreatedAt: now,
		ExpiresAt: now.Add(time.Hour), MaxDownloads: maxDownloads}
	return m, []store.File{f}, []store.Link{l}
}

// TestKeysExpireAfterTheirLinks: every key of a message carries a TTL a
// little beyond its longest expiry, so a janitor that never runs cannot
// leave metadata behind for ever.
func TestKeysExpireAfterTheirLinks(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t, srv)
	defer s.Close()
	ctx := context.Background()
	m, files, links := oneFileMessage(t, time.Now(), 0)
	if err := s.CreateMessage(ctx, m, files, links); err != nil {
		t.Fatal(err)
	}
	keys, err := s.Client().Keys(ctx, s.KeyPrefix()+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 7 {
		t.Errorf("keys = %v, want message, its file set, file, its link set, link, token and the expiry index", keys)
	}
	for _, k := range keys {
		ttl, err := s.Client().PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if k == s.KeyPrefix()+"files:by-expiry" {
			if ttl >= 0 {
				t.Errorf("%s has TTL %s; the index must not expire", k, ttl)
			}
			continue
		}
		if ttl < time.Hour+6*24*time.Hour || ttl > time.Hour+8*24*time.Hour {
			t.Errorf("%s: TTL %s, want about an hour plus a week", k, ttl)
		}
	}
}

// TestOutageAndRecovery: with Redis down calls fail fast with an error
// that is none of the link states (so the link server answers 503), and
// the same Store works again once Redis is back, with its data.
func TestOutageAndRecovery(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t, srv)
	defer s.Close()
	ctx := context.Background()
	m, files, links := oneFileMessage(t, time.Now(), 0)
	if err := s.CreateMessage(ctx, m, files, links); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	start := time.Now()
	_, err := s.LinkByID(ctx, links[0].ID)
	if err == nil {
		t.Fatal("LinkByID succeeded with Redis stopped")
	}
	for _, state := range []error{store.ErrNotFound, store.ErrExpired, store.ErrRevoked, store.ErrLimit} {
		if errors.Is(err, state) {
			t.Errorf("outage error %v reads as %v", err, state)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("failing call took %s", d)
	}
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping succeeded with Redis stopped")
	}

	srv.Restart()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after restart: %v", err)
	}
	if _, err := s.LinkByID(ctx, links[0].ID); err != nil {
		t.Fatalf("LinkByID after restart (scripts reloaded, data kept): %v", err)
	}
	if _, err := s.CountDownload(ctx, links[0].ID, time.Now()); err != nil {
		t.Fatalf("CountDownload after restart: %v", err)
	}
}

func TestPersistence(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t, srv)
	defer s.Close()
	ctx := context.Background()
	aof, rdb, err := s.Persistence(ctx)
	if err != nil || !aof || rdb {
		t.Fatalf("Persistence = aof %v rdb %v err %v; want AOF only (redistest runs --appendonly yes --save \"\")", aof, rdb, err)
	}
	if err := s.Client().ConfigSet(ctx, "appendonly", "no").Err(); err != nil {
		t.Fatal(err)
	}
	if aof, rdb, err := s.Persistence(ctx); err != nil || aof || rdb {
		t.Fatalf("Persistence after appendonly no = %v %v %v; want neither", aof, rdb, err)
	}
}

func TestOpenRejectsBadURL(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:6379", "redis://127.0.0.1:6379/x", "redis://127.0.0.1:1/0"} {
		if _, err := redisstore.Open(context.Background(), redisstore.Options{URL: u, Timeout: time.Second}); err == nil {
			t.Errorf("Open(%q) succeeded", u)
		}
	}
}
