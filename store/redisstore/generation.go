package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/store"
)

var _ store.Generation = (*Store)(nil)

func (s *Store) generationKey() string { return s.prefix + "generation" }

// Generation returns the dataset's marker, "" when Redis has none (it came
// back empty).
func (s *Store) Generation(ctx context.Context) (string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	gen, err := s.client.Get(ctx, s.generationKey()).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read dataset generation: %w", err)
	}
	return gen, nil
}

// InitGeneration writes gen unless a marker exists (SET NX: of two
// instances initialising at once, one wins) and returns the marker.
func (s *Store) InitGeneration(ctx context.Context, gen string) (string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.client.SetNX(ctx, s.generationKey(), gen, 0).Err(); err != nil {
		return "", fmt.Errorf("init dataset generation: %w", err)
	}
	cur, err := s.client.Get(ctx, s.generationKey()).Result()
	if err != nil {
		return "", fmt.Errorf("init dataset generation: %w", err)
	}
	return cur, nil
}
