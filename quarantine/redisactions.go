package quarantine

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisActions keeps sender control and approval in Redis (store.backend
// redis), shared by every instance on it. Key layout (p = the store's
// prefix):
//
//	p quarantine:act:flow:<id>    hash   kind, approvers, deadline (ns),
//	                                     deadline_ms, timeout, created_at,
//	                                     decision, decided_by, decided_at,
//	                                     reason, done_at
//	p quarantine:act:tok:<hex>    hash   item_id, kind, party, expires_at,
//	                                     used_at; <hex> is the SHA-256 of
//	                                     the link's token (never the token)
//	p quarantine:act:toks:<id>    set    the <hex> of the flow's links
//	p quarantine:act:open         zset   undecided approvals by deadline (ms)
//	p quarantine:act:undone       zset   approval decisions not carried out
//	                                     yet, by decided_at (ms)
//	p quarantine:act:closed       zset   flows by when purge may forget them
//	                                     (done_at; a hold's deadline)
//
// Every change of a flow is one Lua script, so decide is atomic across
// instances: the link is used and the decision taken together or not at
// all. The zsets' scores are milliseconds; the hashes keep nanoseconds
// and the reads filter on them, so both backends decide the same. A
// flow's keys get a TTL of keepClosed (plus a day) once it is carried
// out, and a hold's from its insertion, so nothing outlives purge.
type redisActions struct {
	c redis.UniversalClient
	p string
}

func newRedisActions(c redis.UniversalClient, prefix string) *redisActions {
	return &redisActions{c: c, p: prefix + "quarantine:act:"}
}

// ttlMargin is added to keepClosed for the keys' TTL: purge forgets a
// closed flow first, the TTL is the backstop.
const ttlMargin = 24 * time.Hour

func (r *redisActions) flowKey(id string) string { return r.p + "flow:" + id }
func (r *redisActions) tokKey(hash []byte) string {
	return r.p + "tok:" + hex.EncodeToString(hash)
}
func (r *redisActions) toksKey(id string) string { return r.p + "toks:" + id }
func (r *redisActions) openKey() string          { return r.p + "open" }
func (r *redisActions) undoneKey() string        { return r.p + "undone" }
func (r *redisActions) closedKey() string        { return r.p + "closed" }

// ceilMS is t in Unix milliseconds, rounded up: a zset score at or after
// t, so a wake-up at the score finds the deadline passed.
func ceilMS(t time.Time) int64 {
	ns := t.UnixNano()
	ms := ns / 1e6
	if ns%1e6 > 0 {
		ms++
	}
	return ms
}

// insertScript: KEYS flow, toks, open, closed, then one token key per
// link. ARGV id, kind, approvers, deadline ns, deadline ms, timeout,
// created_at, ttl ms (0: none), then kind and party per link.
var insertScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('flow exists') end
for i = 5, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then return redis.error_reply('token exists') end
end
redis.call('HSET', KEYS[1], 'kind', ARGV[2], 'approvers', ARGV[3], 'deadline', ARGV[4], 'deadline_ms', ARGV[5],
  'timeout', ARGV[6], 'created_at', ARGV[7], 'decision', '', 'decided_by', '', 'reason', '')
local ttl = tonumber(ARGV[8])
for i = 5, #KEYS do
  local j = 9 + (i - 5) * 2
  redis.call('HSET', KEYS[i], 'item_id', ARGV[1], 'kind', ARGV[j], 'party', ARGV[j + 1], 'expires_at', ARGV[4])
  redis.call('SADD', KEYS[2], string.sub(KEYS[i], -64))
  if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
end
if ARGV[2] == 'approve' then
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
else
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[1])
end
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 1
`)

func (r *redisActions) insertFlow(ctx context.Context, id, kind, approvers string, deadline time.Time, timeout time.Duration, now time.Time, links []link) error {
	keys := []string{r.flowKey(id), r.toksKey(id), r.openKey(), r.closedKey()}
	var ttl int64
	if kind != "approve" {
		// A hold's flow is forgotten keepClosed after its release time.
		ttl = (max(deadline.Sub(now), 0) + keepClosed + ttlMargin).Milliseconds()
	}
	args := []any{id, kind, approvers, deadline.UnixNano(), ceilMS(deadline), int64(timeout), now.UnixNano(), ttl}
	for _, l := range links {
		keys = append(keys, r.tokKey(l.hash))
		args = append(args, string(l.kind), l.party)
	}
	if err := insertScript.Run(ctx, r.c, keys, args...).Err(); err != nil {
		return fmt.Errorf("record links: %w", err)
	}
	return nil
}

func (r *redisActions) deleteFlow(ctx context.Context, id string) error {
	toks, err := r.c.SMembers(ctx, r.toksKey(id)).Result()
	if err != nil {
		return fmt.Errorf("remove links: %w", err)
	}
	_, err = r.c.TxPipelined(ctx, func(tx redis.Pipeliner) error {
		for _, h := range toks {
			tx.Del(ctx, r.p+"tok:"+h)
		}
		tx.Del(ctx, r.toksKey(id), r.flowKey(id))
		tx.ZRem(ctx, r.openKey(), id)
		tx.ZRem(ctx, r.undoneKey(), id)
		tx.ZRem(ctx, r.closedKey(), id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove links: %w", err)
	}
	return nil
}

func nsTime(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || s == "" {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func (r *redisActions) ticket(ctx context.Context, hash []byte) (Ticket, error) {
	tok, err := r.c.HGetAll(ctx, r.tokKey(hash)).Result()
	if err != nil {
		return Ticket{}, fmt.Errorf("quarantine: look up link: %w", err)
	}
	if len(tok) == 0 {
		return Ticket{}, ErrTokenUnknown
	}
	f, err := r.c.HGetAll(ctx, r.flowKey(tok["item_id"])).Result()
	if err != nil {
		return Ticket{}, fmt.Errorf("quarantine: look up link: %w", err)
	}
	if len(f) == 0 {
		return Ticket{}, ErrTokenUnknown
	}
	return Ticket{Kind: TicketKind(tok["kind"]), TokenHash: hash, ItemID: tok["item_id"], Party: tok["party"],
		Deadline: nsTime(tok["expires_at"]), UsedAt: nsTime(tok["used_at"]), Decision: f["decision"],
		DecidedBy: f["decided_by"], DecidedAt: nsTime(f["decided_at"]), Reason: f["reason"]}, nil
}

// decideScript: KEYS flow, token (or the flow again when the system
// decides), open, undone. ARGV id, decision, by, now ns, reason, now ms,
// "1" when a link decides.
var decideScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[7] == '1' then
  if redis.call('EXISTS', KEYS[2]) == 0 or redis.call('HEXISTS', KEYS[2], 'used_at') == 1 then return 0 end
end
if redis.call('HGET', KEYS[1], 'decision') ~= '' then return 0 end
if ARGV[7] == '1' then redis.call('HSET', KEYS[2], 'used_at', ARGV[4]) end
redis.call('HSET', KEYS[1], 'decision', ARGV[2], 'decided_by', ARGV[3], 'decided_at', ARGV[4], 'reason', ARGV[5])
redis.call('ZREM', KEYS[3], ARGV[1])
local d = ARGV[2]
if redis.call('HGET', KEYS[1], 'kind') == 'approve' and (d == 'approved' or d == 'rejected' or d == 'expired') then
  redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
end
return 1
`)

func (r *redisActions) decide(ctx context.Context, hash []byte, id, decision, by, reason string, now time.Time) (bool, error) {
	tok, link := r.flowKey(id), "0"
	if hash != nil {
		tok, link = r.tokKey(hash), "1"
	}
	n, err := decideScript.Run(ctx, r.c, []string{r.flowKey(id), tok, r.openKey(), r.undoneKey()},
		id, decision, by, now.UnixNano(), reason, ceilMS(now), link).Int()
	if err != nil {
		return false, fmt.Errorf("quarantine: decide: %w", err)
	}
	return n == 1, nil
}

// undoScript: KEYS flow, token, open, undone. ARGV id.
var undoScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HDEL', KEYS[2], 'used_at') end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'decision', '', 'decided_by', '', 'reason', '')
redis.call('HDEL', KEYS[1], 'decided_at')
redis.call('ZREM', KEYS[4], ARGV[1])
if redis.call('HGET', KEYS[1], 'kind') == 'approve' then
  redis.call('ZADD', KEYS[3], redis.call('HGET', KEYS[1], 'deadline_ms'), ARGV[1])
end
return 1
`)

func (r *redisActions) undo(ctx context.Context, hash []byte, id string) error {
	return undoScript.Run(ctx, r.c, []string{r.flowKey(id), r.tokKey(hash), r.openKey(), r.undoneKey()}, id).Err()
}

// doneScript: KEYS flow, undone, closed, toks. ARGV id, now ns, now ms,
// ttl ms. It returns the flow's token hashes (hex) when it marked it.
var doneScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'done_at') == 1 then return {} end
redis.call('HSET', KEYS[1], 'done_at', ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
local s = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not s or tonumber(s) > tonumber(ARGV[3]) then redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[4], ARGV[4])
return redis.call('SMEMBERS', KEYS[4])
`)

func (r *redisActions) done(ctx context.Context, id string, now time.Time, log interface{ Error(string, ...any) }) {
	ttl := (keepClosed + ttlMargin).Milliseconds()
	toks, err := doneScript.Run(ctx, r.c, []string{r.flowKey(id), r.undoneKey(), r.closedKey(), r.toksKey(id)},
		id, now.UnixNano(), now.UnixMilli(), ttl).StringSlice()
	if err == nil && len(toks) > 0 {
		_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, h := range toks {
				p.PExpire(ctx, r.p+"tok:"+h, time.Duration(ttl)*time.Millisecond)
			}
			return nil
		})
	}
	if err != nil {
		log.Error("quarantine: mark decision carried out", "msg", id, "err", err)
	}
}

// candidates reads the flows of the ids in zset key scored up to max ms,
// in score order; ids whose flow is gone (TTL) leave the zset.
func (r *redisActions) candidates(ctx context.Context, key string, maxMS int64) ([]string, []map[string]string, error) {
	ids, err := r.c.ZRangeByScore(ctx, key, &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(maxMS, 10)}).Result()
	if err != nil || len(ids) == 0 {
		return nil, nil, err
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	if _, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, r.flowKey(id))
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	var outIDs []string
	var out []map[string]string
	for i, c := range cmds {
		if len(c.Val()) == 0 {
			r.c.ZRem(ctx, key, ids[i])
			continue
		}
		outIDs = append(outIDs, ids[i])
		out = append(out, c.Val())
	}
	return outIDs, out, nil
}

func row(id string, f map[string]string) flowRow {
	timeout, _ := strconv.ParseInt(f["timeout"], 10, 64)
	return flowRow{id: id, decision: f["decision"], decidedBy: f["decided_by"], reason: f["reason"], timeout: time.Duration(timeout)}
}

func (r *redisActions) expiredApprovals(ctx context.Context, now time.Time) ([]flowRow, error) {
	ids, fs, err := r.candidates(ctx, r.openKey(), ceilMS(now))
	if err != nil {
		return nil, err
	}
	var out []flowRow
	for i, f := range fs {
		if f["kind"] == "approve" && f["decision"] == "" && !nsTime(f["deadline"]).After(now) {
			out = append(out, row(ids[i], f))
		}
	}
	return out, nil
}

func (r *redisActions) undone(ctx context.Context, decidedBefore time.Time) ([]flowRow, error) {
	ids, fs, err := r.candidates(ctx, r.undoneKey(), ceilMS(decidedBefore))
	if err != nil {
		return nil, err
	}
	var out []flowRow
	for i, f := range fs {
		d := f["decision"]
		if f["kind"] == "approve" && (d == DecisionApproved || d == DecisionRejected || d == DecisionExpired) &&
			f["done_at"] == "" && !nsTime(f["decided_at"]).After(decidedBefore) {
			out = append(out, row(ids[i], f))
		}
	}
	return out, nil
}

func (r *redisActions) nextDeadline(ctx context.Context) (time.Time, bool) {
	z, err := r.c.ZRangeWithScores(ctx, r.openKey(), 0, 0).Result()
	if err != nil || len(z) == 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(z[0].Score)), true
}

// purge forgets the flows closed before the given time, with their links.
func (r *redisActions) purge(ctx context.Context, before time.Time) error {
	ids, err := r.c.ZRangeByScore(ctx, r.closedKey(), &redis.ZRangeBy{Min: "-inf",
		Max: "(" + strconv.FormatInt(before.UnixMilli(), 10)}).Result()
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		if err := r.deleteFlow(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
