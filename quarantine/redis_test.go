package quarantine

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/redistest"
	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

// forEachBackend runs f with the index in SQLite and in a real Redis.
func forEachBackend(t *testing.T, f func(t *testing.T, e *env)) {
	t.Run("sqlite", func(t *testing.T) { f(t, newEnv(t)) })
	t.Run("redis", func(t *testing.T) { f(t, newRedisEnv(t)) })
}

func newRedisEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	e.redis = c
	return e
}

func TestRedisIndexHoldGetPage(t *testing.T) {
	e := newRedisEnv(t)
	m := e.open(t)
	ctx := context.Background()
	var ids []string
	for i := 0; i < 5; i++ {
		id := store.NewID()
		ids = append(ids, id)
		if _, err := m.Hold(ctx, item(id, policies.Quarantine), bytes.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			e.clock.Add(time.Second)
		}
	}
	got, err := m.Get(ctx, ids[3])
	if err != nil || got.From != "a@example.com" || len(got.To) != 2 || got.Action != policies.Quarantine {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	var seen []string
	after := Cursor{}
	for {
		items, more, err := m.Page(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			seen = append(seen, it.ID)
		}
		if !more {
			break
		}
		after = CursorOf(items[len(items)-1])
	}
	list, _ := m.List(ctx)
	if len(seen) != 5 || len(list) != 5 {
		t.Fatalf("paged %d, listed %d, want 5", len(seen), len(list))
	}
	for i := range list {
		if list[i].ID != seen[i] {
			t.Errorf("page order %v differs from list order", seen)
		}
	}
	if _, err := m.Delete(ctx, ids[0], "admin:ops"); err != nil {
		t.Fatal(err)
	}
	if list, _ := m.List(ctx); len(list) != 4 {
		t.Errorf("%d listed after a deletion", len(list))
	}
}

// TestTwoInstancesReleaseADueMessageOnce: two Managers (two gateway
// instances) on one Redis and one storage directory race to release the
// same due messages; each message goes out exactly once and is audited
// once.
func TestTwoInstancesReleaseADueMessageOnce(t *testing.T) {
	e := newRedisEnv(t)
	// A slow next hop keeps each release in flight while the other
	// instance looks at the same due item.
	e.next.SetBehaviour(smtptest.Behaviour{HangAtDataEnd: 200 * time.Millisecond})
	a, b := e.open(t), e.open(t)
	ctx := context.Background()
	const n = 4
	for i := 0; i < n; i++ {
		if _, err := a.Hold(ctx, item(store.NewID(), policies.Hold), bytes.NewReader(testMsg)); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Add(time.Hour)
	var wg sync.WaitGroup
	for _, m := range []*Manager{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.ReleaseDue(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := len(e.delivered()); got != n {
		t.Errorf("next hop got %d messages, want %d (each exactly once)", got, n)
	}
	rel := e.events(t, audit.TypeMailReleased)
	seen := map[string]int{}
	for _, ev := range rel {
		seen[ev.MessageID]++
	}
	if len(rel) != n || len(seen) != n {
		t.Errorf("mail.released %d times for %d messages, want %d once each", len(rel), len(seen), n)
	}
	if list, _ := a.List(ctx); len(list) != 0 {
		t.Errorf("%d still held", len(list))
	}
}

// TestClaimExcludesOtherInstances: while one instance (Redis) or process
// (the CLI beside the daemon on SQLite) works on a held message, the other
// gets ErrBusy; the claim is given back afterwards.
func TestClaimExcludesOtherInstances(t *testing.T) {
	forEachBackend(t, testClaimExcludes)
}

func testClaimExcludes(t *testing.T, e *env) {
	a, b := e.open(t), e.open(t)
	ctx := context.Background()
	id := store.NewID()
	if _, err := a.Hold(ctx, item(id, policies.Quarantine), bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	if !a.claim(id) {
		t.Fatal("claim")
	}
	if _, err := b.Release(ctx, id, "admin:ops"); !errors.Is(err, ErrBusy) {
		t.Errorf("release by the other instance while claimed: %v", err)
	}
	if _, err := b.Delete(ctx, id, "admin:ops"); !errors.Is(err, ErrBusy) {
		t.Errorf("delete by the other instance while claimed: %v", err)
	}
	a.unclaim(id)
	if _, err := b.Delete(ctx, id, "admin:ops"); err != nil {
		t.Errorf("delete after the claim was given back: %v", err)
	}
	if n := countBlobs(t, filepath.Join(e.dir, "quarantine")); n != 0 {
		t.Errorf("%d blobs left", n)
	}
}

// TestCommandBesideTheDaemonKeepsLeftovers: a Manager opened by a command
// beside a serving daemon (KeepLeftovers) must not take the daemon's
// message being held right now (blob stored, record not yet written) for
// a crash leftover.
func TestCommandBesideTheDaemonKeepsLeftovers(t *testing.T) {
	e := newEnv(t)
	e.open(t)
	blobs, err := vault.NewBlobStore(filepath.Join(e.dir, "quarantine"), e.ring)
	if err != nil {
		t.Fatal(err)
	}
	inFlight := store.NewID()
	if _, err := blobs.Put(inFlight, bytes.NewReader(testMsg)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), Options{DB: e.st.DB(), Dir: filepath.Join(e.dir, "quarantine"), Ring: e.ring,
		Audit: e.rec, Logger: discardLog(), KeepLeftovers: true}); err != nil {
		t.Fatal(err)
	}
	if n := countBlobs(t, filepath.Join(e.dir, "quarantine")); n != 1 {
		t.Errorf("%d blobs after a command opened the quarantine, want the in-flight one kept", n)
	}
}
