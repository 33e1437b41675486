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

// Recipient verification keys (p = prefix), each expired by Redis a
// minute after its last deadline:
//
//	p vcode:<hex subject>  hash  c:<hex code hash> → expiry (unix ms);
//	                             failures, last_fail, locked_until (unix ms)
//	p rate:<key>           hash  count, end (unix ms): one fixed window
//
// Times are unix milliseconds from the caller's clock, compared inside
// the scripts (exact in Lua doubles); the TTLs only clean up.

func (s *Store) codeKey(subject []byte) string {
	return s.prefix + "vcode:" + hex.EncodeToString(subject)
}

// graceMs keeps a key a minute past its last deadline.
const graceMs = int64(time.Minute / time.Millisecond)

// addCodeScript: KEYS[1] the subject's hash; ARGV code field, expiry ms,
// now ms, grace ms. Returns -1 when locked (nothing stored), else 1.
var addCodeScript = redis.NewScript(`
local key = KEYS[1]
local field, exp, now, grace = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local locked = tonumber(redis.call('HGET', key, 'locked_until') or '0')
if locked > now then return -1 end
local all = redis.call('HGETALL', key)
local keep = exp
for i = 1, #all, 2 do
  local f, v = all[i], tonumber(all[i + 1])
  if string.sub(f, 1, 2) == 'c:' then
    if v <= now then redis.call('HDEL', key, f) elseif v > keep then keep = v end
  end
end
redis.call('HSET', key, field, exp)
local ttl = redis.call('PTTL', key)
local want = keep - now + grace
if ttl < want then redis.call('PEXPIRE', key, want) end
return 1
`)

// checkCodeScript: KEYS[1] the subject's hash; ARGV code field, now ms,
// max failures, lock ms, grace ms. Returns {outcome, n, locked_until}
// with outcome 0 ok, 1 wrong (n failures), 2 locked now, 3 locked.
var checkCodeScript = redis.NewScript(`
local key = KEYS[1]
local field, now, maxF, lockMs, grace = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local locked = tonumber(redis.call('HGET', key, 'locked_until') or '0')
if locked > now then return {3, 0, tostring(locked)} end
local exp = redis.call('HGET', key, field)
if exp and tonumber(exp) > now then
  redis.call('DEL', key)
  return {0, 0, '0'}
end
local failures = tonumber(redis.call('HGET', key, 'failures') or '0')
local last = tonumber(redis.call('HGET', key, 'last_fail') or '0')
if last + lockMs <= now then failures = 0 end
failures = failures + 1
if failures >= maxF then
  redis.call('DEL', key)
  redis.call('HSET', key, 'locked_until', now + lockMs)
  redis.call('PEXPIRE', key, lockMs + grace)
  return {2, failures, tostring(now + lockMs)}
end
redis.call('HSET', key, 'failures', failures, 'last_fail', now)
local ttl = redis.call('PTTL', key)
if ttl < lockMs + grace then redis.call('PEXPIRE', key, lockMs + grace) end
return {1, failures, '0'}
`)

// hitLimitScript: KEYS[1] the window's hash; ARGV now ms, window ms,
// grace ms. Returns the count in the window, this event included.
var hitLimitScript = redis.NewScript(`
local key = KEYS[1]
local now, window, grace = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local h = redis.call('HMGET', key, 'count', 'end')
local count, e = tonumber(h[1] or '0'), tonumber(h[2] or '0')
if e <= now then count, e = 0, now + window end
count = count + 1
redis.call('HSET', key, 'count', count, 'end', e)
redis.call('PEXPIRE', key, e - now + grace)
return count
`)

// AddCode stores a code hash for subject unless it is locked.
func (s *Store) AddCode(ctx context.Context, subject, codeHash []byte, expires, now time.Time) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := addCodeScript.Run(ctx, s.client, []string{s.codeKey(subject)},
		"c:"+hex.EncodeToString(codeHash), expires.UnixMilli(), now.UnixMilli(), graceMs).Int()
	if err != nil {
		return fmt.Errorf("add code: %w", err)
	}
	if n < 0 {
		return fmt.Errorf("add code: %w", store.ErrLocked)
	}
	return nil
}

// CheckCode checks and counts one attempt in one script.
func (s *Store) CheckCode(ctx context.Context, subject, codeHash []byte, lim store.CodeLimits, now time.Time) (store.CodeCheck, error) {
	if lim.MaxFailures < 1 || lim.LockFor <= 0 {
		return store.CodeCheck{}, fmt.Errorf("check code: bad limits %+v", lim)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	res, err := checkCodeScript.Run(ctx, s.client, []string{s.codeKey(subject)},
		"c:"+hex.EncodeToString(codeHash), now.UnixMilli(), lim.MaxFailures, lim.LockFor.Milliseconds(), graceMs).Slice()
	if err != nil {
		return store.CodeCheck{}, fmt.Errorf("check code: %w", err)
	}
	if len(res) != 3 {
		return store.CodeCheck{}, fmt.Errorf("check code: script returned %d values", len(res))
	}
	outcome, ok1 := res[0].(int64)
	failures, ok2 := res[1].(int64)
	lockedStr, ok3 := res[2].(string)
	if !ok1 || !ok2 || !ok3 {
		return store.CodeCheck{}, errors.New("check code: script returned unexpected types")
	}
	var lockedMs int64
	if _, err := fmt.Sscan(lockedStr, &lockedMs); err != nil {
		return store.CodeCheck{}, fmt.Errorf("check code: locked_until %q: %w", lockedStr, err)
	}
	c := store.CodeCheck{Failures: int(failures)}
	if lockedMs > 0 {
		c.LockedUntil = time.UnixMilli(lockedMs).UTC()
	}
	switch outcome {
	case 0:
		c.Outcome = store.CodeOK
	case 1:
		c.Outcome = store.CodeWrong
	case 2:
		c.Outcome = store.CodeLockedNow
	case 3:
		c.Outcome = store.CodeLocked
	default:
		return store.CodeCheck{}, fmt.Errorf("check code: script returned outcome %d", outcome)
	}
	return c, nil
}

// HitLimit counts one event in key's fixed window.
func (s *Store) HitLimit(ctx context.Context, key string, limit int, window time.Duration, now time.Time) (bool, error) {
	if window <= 0 {
		return false, fmt.Errorf("rate limit %s: window %s", key, window)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := hitLimitScript.Run(ctx, s.client, []string{s.prefix + "rate:" + key},
		now.UnixMilli(), window.Milliseconds(), graceMs).Int()
	if err != nil {
		return false, fmt.Errorf("rate limit %s: %w", key, err)
	}
	return n <= limit, nil
}
