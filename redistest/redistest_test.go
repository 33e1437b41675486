package redistest_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/redistest"
)

// TestDataSurvivesRestart: the append-only file keeps what was written
// before Stop, and Restart comes back on the same URL.
func TestDataSurvivesRestart(t *testing.T) {
	srv := redistest.Start(t)
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	opts.MaxRetries = -1
	client := redis.NewClient(opts)
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	aof, err := client.ConfigGet(ctx, "appendonly").Result()
	if err != nil || aof["appendonly"] != "yes" {
		t.Fatalf("appendonly = %v, %v; want yes", aof, err)
	}

	srv.Stop()
	if err := client.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded while stopped")
	}
	srv.Stop() // stopping twice is harmless
	srv.Restart()
	if got, err := client.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("after restart: GET k = %q, %v; want v", got, err)
	}
}
