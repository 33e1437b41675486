package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/store"
)

// Access records and what the manage page changes.
//
//	p msg:<id>:access           list  the newest store.MaxAccessesPerMessage
//	                                  records, newest first, each
//	                                  "<file ID> <JSON>"
//	p file:<id>:downloaders     set   "r:<recipient>" of everyone who
//	                                  downloaded the file ("r:" unverified)
//
// Both live as long as the message's and file's keys (their TTL is copied
// when written) and go with them in the delete scripts.

// accessEntry is the JSON of one access record in the list.
type accessEntry struct {
	LinkID     string `json:"l"`
	FileID     string `json:"f"`
	Kind       string `json:"k"`
	At         int64  `json:"t"` // unix ns
	Recipient  string `json:"r,omitempty"`
	ClientAddr string `json:"c,omitempty"`
}

// recordAccessScript appends an access record and, for a download, tells
// whether it was the first by that recipient (by anyone, for ""), in one
// atomic step. ARGV: prefix, file ID, expected message ID ("" = any),
// kind, recipient, entry, max entries. It returns {0} for an unknown file,
// {-1, message ID} when the file belongs to another message, else
// {1, first (0/1), message ID}.
var recordAccessScript = redis.NewScript(`
local p, fileID, wantMsg, kind, rcpt, entry, maxn = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local fileKey = p .. 'file:' .. fileID
local mid = redis.call('HGET', fileKey, 'message_id')
if not mid then return {0} end
if wantMsg ~= '' and wantMsg ~= mid then return {-1, mid} end
local first = 0
if kind == 'download' then
  local set = fileKey .. ':downloaders'
  if rcpt == '' and redis.call('SCARD', set) == 0 then first = 1 end
  local added = redis.call('SADD', set, 'r:' .. rcpt)
  if rcpt ~= '' and added == 1 then first = 1 end
  local ttl = redis.call('PTTL', fileKey)
  if ttl > 0 then redis.call('PEXPIRE', set, ttl) end
end
local msgKey = p .. 'msg:' .. mid
local list = msgKey .. ':access'
redis.call('LPUSH', list, entry)
redis.call('LTRIM', list, 0, maxn - 1)
local ttl = redis.call('PTTL', msgKey)
if ttl > 0 then redis.call('PEXPIRE', list, ttl) end
return {1, first, mid}
`)

// RecordAccess records a view or download; see store.Store.
func (s *Store) RecordAccess(ctx context.Context, a store.Access) (bool, error) {
	if err := validAccess(a); err != nil {
		return false, fmt.Errorf("record access to file %s: %w", a.FileID, err)
	}
	entry, err := json.Marshal(accessEntry{LinkID: a.LinkID, FileID: a.FileID, Kind: a.Kind,
		At: a.At.UnixNano(), Recipient: a.Recipient, ClientAddr: a.ClientAddr})
	if err != nil {
		return false, fmt.Errorf("record access to file %s: %w", a.FileID, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	reply, err := recordAccessScript.Run(ctx, s.client, []string{s.prefix + "file:" + a.FileID},
		s.prefix, a.FileID, a.MessageID, a.Kind, a.Recipient, a.FileID+" "+string(entry),
		strconv.Itoa(store.MaxAccessesPerMessage)).Slice()
	if err != nil {
		return false, fmt.Errorf("record access to file %s: %w", a.FileID, err)
	}
	outcome, _ := reply[0].(int64)
	switch outcome {
	case 0:
		return false, fmt.Errorf("record access to file %s: %w", a.FileID, store.ErrNotFound)
	case -1:
		return false, fmt.Errorf("record access to file %s: file belongs to message %v, not %s", a.FileID, reply[1], a.MessageID)
	}
	if len(reply) < 2 {
		return false, fmt.Errorf("record access to file %s: short reply", a.FileID)
	}
	first, _ := reply[1].(int64)
	return first == 1, nil
}

func validAccess(a store.Access) error {
	switch {
	case a.FileID == "" || strings.ContainsAny(a.FileID, " "):
		return fmt.Errorf("file ID %q is empty or has a space", a.FileID)
	case a.Kind != store.AccessView && a.Kind != store.AccessDownload:
		return fmt.Errorf("unknown access kind %q", a.Kind)
	case !storable(a.At):
		return fmt.Errorf("access time %v not set or outside 1970-2262", a.At)
	}
	return nil
}

// Accesses lists a message's access records, oldest first.
func (s *Store) Accesses(ctx context.Context, messageID string) ([]store.Access, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	items, err := s.client.LRange(ctx, s.messageKey(messageID)+":access", 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("accesses of message %s: %w", messageID, err)
	}
	out := make([]store.Access, 0, len(items))
	for _, item := range slices.Backward(items) {
		_, js, ok := strings.Cut(item, " ")
		var e accessEntry
		if !ok || json.Unmarshal([]byte(js), &e) != nil {
			return nil, fmt.Errorf("accesses of message %s: malformed record %q", messageID, item)
		}
		a := store.Access{MessageID: messageID, LinkID: e.LinkID, FileID: e.FileID, Kind: e.Kind,
			Recipient: e.Recipient, ClientAddr: e.ClientAddr}
		if e.At != 0 {
			a.At = time.Unix(0, e.At).UTC()
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// revokeMessageScript revokes every link of the message not revoked yet.
// It returns -1 when the message is unknown, else how many it revoked.
var revokeMessageScript = redis.NewScript(`
local p, messageKey, now = ARGV[1], KEYS[1], ARGV[2]
if redis.call('EXISTS', messageKey) == 0 then return -1 end
local n = 0
for _, fileID in ipairs(redis.call('SMEMBERS', messageKey .. ':files')) do
  for _, linkID in ipairs(redis.call('SMEMBERS', p .. 'file:' .. fileID .. ':links')) do
    local linkKey = p .. 'link:' .. linkID
    if redis.call('EXISTS', linkKey) == 1 then
      n = n + redis.call('HSETNX', linkKey, 'revoked_at', now)
    end
  end
end
return n
`)

// RevokeMessage revokes every link of a message; see store.Store.
func (s *Store) RevokeMessage(ctx context.Context, messageID string, now time.Time) (int, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	n, err := revokeMessageScript.Run(ctx, s.client, []string{s.messageKey(messageID)}, s.prefix, nanos(now)).Int()
	if err != nil {
		return 0, fmt.Errorf("revoke message %s: %w", messageID, err)
	}
	if n < 0 {
		return 0, fmt.Errorf("revoke message %s: %w", messageID, store.ErrNotFound)
	}
	return n, nil
}

// setMessageExpiryScript sets expires_at of every file and link of the
// message, moves the files in the expiry index and gives every key of the
// message the new TTL. ARGV: prefix, expiry (unix ns), expiry score, TTL
// in ms. It returns 0 when the message is unknown.
var setMessageExpiryScript = redis.NewScript(`
local p, messageKey, expires, score, ttl = ARGV[1], KEYS[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', messageKey) == 0 then return 0 end
for _, fileID in ipairs(redis.call('SMEMBERS', messageKey .. ':files')) do
  local fileKey = p .. 'file:' .. fileID
  if redis.call('EXISTS', fileKey) == 1 then
    redis.call('HSET', fileKey, 'expires_at', expires)
    redis.call('ZADD', p .. 'files:by-expiry', score, fileID)
    redis.call('PEXPIRE', fileKey, ttl)
    redis.call('PEXPIRE', fileKey .. ':links', ttl)
    redis.call('PEXPIRE', fileKey .. ':downloaders', ttl)
    for _, linkID in ipairs(redis.call('SMEMBERS', fileKey .. ':links')) do
      local linkKey = p .. 'link:' .. linkID
      if redis.call('EXISTS', linkKey) == 1 then
        redis.call('HSET', linkKey, 'expires_at', expires)
        redis.call('PEXPIRE', linkKey, ttl)
        local tokenHash = redis.call('HGET', linkKey, 'token_hash')
        if tokenHash then redis.call('PEXPIRE', p .. 'token:' .. tokenHash, ttl) end
      end
    end
  end
end
redis.call('PEXPIRE', messageKey, ttl)
redis.call('PEXPIRE', messageKey .. ':files', ttl)
redis.call('PEXPIRE', messageKey .. ':access', ttl)
local h = redis.call('HMGET', messageKey, 'page_token_hash', 'manage_token_hash')
if h[1] and h[1] ~= '' then redis.call('PEXPIRE', p .. 'mtoken:page:' .. h[1], ttl) end
if h[2] and h[2] ~= '' then redis.call('PEXPIRE', p .. 'mtoken:manage:' .. h[2], ttl) end
return 1
`)

// SetMessageExpiry sets the expiry of every file and link of a message.
// The keys then live until t plus the usual grace, counted from now as
// keyTTL counts it at creation.
func (s *Store) SetMessageExpiry(ctx context.Context, messageID string, t time.Time) error {
	if !storable(t) {
		return fmt.Errorf("set expiry of message %s: %v is not a storable expiry (1970-2262)", messageID, t)
	}
	ttl := max(time.Until(t), 0) + ttlGrace
	ctx, cancel := s.bound(ctx)
	defer cancel()
	ok, err := setMessageExpiryScript.Run(ctx, s.client, []string{s.messageKey(messageID)},
		s.prefix, nanos(t), expiryScore(t), strconv.FormatInt(ttl.Milliseconds(), 10)).Int()
	if err != nil {
		return fmt.Errorf("set expiry of message %s: %w", messageID, err)
	}
	if ok == 0 {
		return fmt.Errorf("set expiry of message %s: %w", messageID, store.ErrNotFound)
	}
	return nil
}
