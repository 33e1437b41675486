package redisstore_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/attachgate/attachgate/redistest"
	"github.com/attachgate/attachgate/store"
)

// TestAccessKeysFollowTheMessage: access records and the downloader set
// carry the message's TTL, SetMessageExpiry moves every key's TTL to the
// new expiry plus the grace week (shorter and longer), and deleting the
// message leaves no key of it behind.
func TestAccessKeysFollowTheMessage(t *testing.T) {
	srv := redistest.Start(t)
	s := openStore(t, srv)
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	m, files, links := oneFileMessage(t, now, 0)
	_, manage, _ := store.NewToken()
	m.ManageTokenHash = manage
	if err := s.CreateMessage(ctx, m, files, links); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{store.AccessView, store.AccessDownload} {
		if _, err := s.RecordAccess(ctx, store.Access{MessageID: m.ID, LinkID: links[0].ID, FileID: files[0].ID,
			Kind: kind, At: now, Recipient: "bob@example.net", ClientAddr: "192.0.2.7"}); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := s.Client().Keys(ctx, s.KeyPrefix()+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"msg:" + m.ID + ":access", "file:" + files[0].ID + ":downloaders"} {
		if !slices.Contains(keys, s.KeyPrefix()+want) {
			t.Fatalf("no key %s among %v", want, keys)
		}
	}
	const grace = 7 * 24 * time.Hour
	checkTTLs := func(what string, lifetime time.Duration) {
		t.Helper()
		keys, err := s.Client().Keys(ctx, s.KeyPrefix()+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if k == s.KeyPrefix()+"files:by-expiry" {
				continue
			}
			ttl, err := s.Client().PTTL(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if ttl < lifetime+grace-time.Minute || ttl > lifetime+grace+time.Second {
				t.Errorf("%s: %s: TTL %s, want about %s", what, k, ttl, lifetime+grace)
			}
		}
	}
	checkTTLs("created", time.Hour)
	if err := s.SetMessageExpiry(ctx, m.ID, now.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	checkTTLs("shortened", 10*time.Minute)
	if err := s.SetMessageExpiry(ctx, m.ID, now.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	checkTTLs("extended", 48*time.Hour)
	score, err := s.Client().ZScore(ctx, s.KeyPrefix()+"files:by-expiry", files[0].ID).Result()
	if err != nil || int64(score) != now.Add(48*time.Hour).UnixMicro() {
		t.Errorf("expiry index score %v (%v), want %d", int64(score), err, now.Add(48*time.Hour).UnixMicro())
	}

	if _, err := s.DeleteMessage(ctx, m.ID); err != nil {
		t.Fatal(err)
	}
	keys, err = s.Client().Keys(ctx, s.KeyPrefix()+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("keys left after DeleteMessage: %v", keys)
	}
}
