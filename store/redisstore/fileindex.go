package redisstore

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/store"
)

var _ store.FileIndex = (*Store)(nil)

// KnownFiles returns which of ids have a file hash, in one pipeline.
func (s *Store) KnownFiles(ctx context.Context, ids []string) (map[string]bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	cmds := make([]*redis.IntCmd, len(ids))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Exists(ctx, s.prefix+"file:"+id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("known files: %w", err)
	}
	known := make(map[string]bool, len(ids))
	for i, c := range cmds {
		if c.Val() > 0 {
			known[ids[i]] = true
		}
	}
	return known, nil
}
