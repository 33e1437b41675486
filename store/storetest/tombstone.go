package storetest

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/attachgate/attachgate/store"
)

// testTombstones buries the links of a purged file: an expired link and a
// revoked one keep a tombstone (state, date, nothing about the file) until
// keepUntil, a live message's links have none, and burying twice is
// harmless.
func testTombstones(t *testing.T, s store.Store) {
	ctx := context.Background()
	f := newFixture(t, 2, time.Hour, 0)
	f.create(t, s)
	other := newFixture(t, 1, time.Hour, 0)
	other.create(t, s)
	revokedAt := base.Add(10 * time.Minute)
	if err := s.RevokeLink(ctx, f.links[1].ID, revokedAt); err != nil {
		t.Fatalf("RevokeLink: %v", err)
	}
	// Redis expires tombstones by the wall clock, so keepUntil is real
	// time; the lookups pass now explicitly.
	now := time.Now().UTC()
	keepUntil := now.Add(2 * time.Hour).Truncate(time.Millisecond)

	if _, err := s.BuryLinks(ctx, store.NewID(), keepUntil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("BuryLinks of unknown file: %v, want ErrNotFound", err)
	}
	for i, file := range f.files {
		for range 2 { // idempotent
			n, err := s.BuryLinks(ctx, file.ID, keepUntil)
			if err != nil || n != 1 {
				t.Fatalf("BuryLinks(file %d) = %d, %v; want 1 link", i, n, err)
			}
		}
		if err := s.DeleteFile(ctx, file.ID); err != nil {
			t.Fatalf("DeleteFile(%d): %v", i, err)
		}
	}

	want := []struct {
		state string
		at    time.Time
	}{
		{store.TombstoneExpired, f.links[0].ExpiresAt},
		{store.TombstoneRevoked, revokedAt},
	}
	for i, w := range want {
		hash := store.HashToken(f.tokens[i])
		if _, err := s.LinkByTokenHash(ctx, hash); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("link %d after purge: %v, want ErrNotFound", i, err)
		}
		tomb, err := s.TombstoneByTokenHash(ctx, hash, now)
		if err != nil {
			t.Fatalf("TombstoneByTokenHash(%d): %v", i, err)
		}
		if !bytes.Equal(tomb.TokenHash, hash) || tomb.State != w.state || !sameTime(tomb.At, w.at) || !sameTime(tomb.KeepUntil, keepUntil) {
			t.Errorf("tombstone %d = %+v, want state %s at %v kept until %v", i, tomb, w.state, w.at, keepUntil)
		}
		if _, err := s.TombstoneByTokenHash(ctx, hash, keepUntil); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("tombstone %d at keepUntil: %v, want ErrNotFound", i, err)
		}
	}
	// A live link has no tombstone; an invented token neither.
	for _, hash := range [][]byte{store.HashToken(other.tokens[0]), store.HashToken("AAAA")} {
		if _, err := s.TombstoneByTokenHash(ctx, hash, now); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("tombstone of a live or unknown token: %v, want ErrNotFound", err)
		}
	}

	// Purging after keepUntil removes them for good; a backend that
	// expires them on its own (Redis) reports 0 and keeps nothing past
	// keepUntil anyway.
	n, err := s.PurgeTombstones(ctx, keepUntil.Add(time.Second))
	if err != nil {
		t.Fatalf("PurgeTombstones: %v", err)
	}
	switch n {
	case 0:
	case 2:
		if _, err := s.TombstoneByTokenHash(ctx, store.HashToken(f.tokens[0]), now); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("tombstone after PurgeTombstones: %v, want ErrNotFound", err)
		}
	default:
		t.Errorf("PurgeTombstones removed %d, want 0 (self-expiring backend) or 2", n)
	}
}
