package redisstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/store"
)

// Tombstones live under p tomb:<hex token hash> as a hash (state, at,
// keep_until) that Redis itself expires at keep_until, so PurgeTombstones
// has nothing to do.

func (s *Store) tombKey(hash []byte) string { return s.prefix + "tomb:" + hex.EncodeToString(hash) }

// BuryLinks writes the tombstones of a file's links. It reads the links
// and then writes; both are idempotent, so a race with another instance
// burying the same file writes the same tombstones twice.
func (s *Store) BuryLinks(ctx context.Context, fileID string, keepUntil time.Time) (int, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	fileKey := s.prefix + "file:" + fileID
	expires, err := s.client.HGet(ctx, fileKey, "expires_at").Result()
	if errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("bury links of file %s: %w", fileID, store.ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("bury links of file %s: %w", fileID, err)
	}
	fileExpires, err := parseNanos(expires)
	if err != nil {
		return 0, fmt.Errorf("bury links of file %s: field expires_at: %w", fileID, err)
	}
	ids, err := s.client.SMembers(ctx, fileKey+":links").Result()
	if err != nil {
		return 0, fmt.Errorf("bury links of file %s: %w", fileID, err)
	}
	var tombs []store.Tombstone
	for _, id := range ids {
		fields, err := s.client.HGetAll(ctx, s.linkKey(id)).Result()
		if err != nil {
			return 0, fmt.Errorf("bury link %s: %w", id, err)
		}
		if len(fields) == 0 {
			continue // removed meanwhile
		}
		l, err := parseLink(fields)
		if err != nil {
			return 0, fmt.Errorf("bury link %s: %w", id, err)
		}
		tombs = append(tombs, store.TombstoneFor(l, fileExpires, keepUntil))
	}
	if len(tombs) == 0 {
		return 0, nil
	}
	_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, t := range tombs {
			key := s.tombKey(t.TokenHash)
			p.HSet(ctx, key, "state", t.State, "at", nanos(t.At), "keep_until", nanos(t.KeepUntil))
			p.PExpireAt(ctx, key, t.KeepUntil)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bury links of file %s: %w", fileID, err)
	}
	return len(tombs), nil
}

// TombstoneByTokenHash finds a live tombstone.
func (s *Store) TombstoneByTokenHash(ctx context.Context, hash []byte, now time.Time) (store.Tombstone, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	fields, err := s.client.HGetAll(ctx, s.tombKey(hash)).Result()
	if err != nil {
		return store.Tombstone{}, fmt.Errorf("tombstone: %w", err)
	}
	if len(fields) == 0 {
		return store.Tombstone{}, fmt.Errorf("tombstone: %w", store.ErrNotFound)
	}
	p := fieldParser{fields: fields}
	t := store.Tombstone{TokenHash: append([]byte(nil), hash...), State: fields["state"],
		At: p.time("at"), KeepUntil: p.time("keep_until")}
	if p.err != nil {
		return store.Tombstone{}, fmt.Errorf("tombstone: %w", p.err)
	}
	if !t.KeepUntil.After(now) {
		return store.Tombstone{}, fmt.Errorf("tombstone: %w", store.ErrNotFound)
	}
	return t, nil
}

// PurgeTombstones has nothing to do: Redis expires tombstones at their
// keep_until.
func (s *Store) PurgeTombstones(context.Context, time.Time) (int, error) { return 0, nil }
