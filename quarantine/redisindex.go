package quarantine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisIndex keeps the held items in Redis (store.backend redis), shared
// by every instance on it. Key layout (p = the store's prefix):
//
//	p quarantine:item:<id>   string JSON of the Item
//	p quarantine:held        zset   "<held_at ns, 20 digits>:<id>", all
//	                                scores 0: the list order, by lex
//	p quarantine:due         zset   id scored by release_at in Unix ms
//	p quarantine:claim:<id>  string the claiming instance's token, with a
//	                                lease (PX) renewed while it works
//
// Writes of one item go in one MULTI/EXEC, so the sets never name an item
// that is not there. The claim is what makes exactly one instance release
// (or delete, reject, purge) an item: SET NX PX, renewed every third of
// the lease while held, given back only by its owner (a script compares
// the token); an instance that dies loses it when the lease runs out.
type redisIndex struct {
	c      redis.UniversalClient
	p      string
	leases *leases
}

func newRedisIndex(c redis.UniversalClient, prefix string) *redisIndex {
	return &redisIndex{c: c, p: prefix + "quarantine:", leases: newLeases()}
}

func (x *redisIndex) itemKey(id string) string  { return x.p + "item:" + id }
func (x *redisIndex) claimKey(id string) string { return x.p + "claim:" + id }
func (x *redisIndex) heldKey() string           { return x.p + "held" }
func (x *redisIndex) dueKey() string            { return x.p + "due" }

// heldMember sorts like (held_at, id): fixed-width nanoseconds first.
func heldMember(heldAt time.Time, id string) string {
	return fmt.Sprintf("%020d:%s", heldAt.UnixNano(), id)
}

func (x *redisIndex) write(ctx context.Context, it Item, create bool) error {
	data, err := json.Marshal(it)
	if err != nil {
		return err
	}
	_, err = x.c.TxPipelined(ctx, func(tx redis.Pipeliner) error {
		if create {
			tx.SetNX(ctx, x.itemKey(it.ID), data, 0)
		} else {
			tx.SetXX(ctx, x.itemKey(it.ID), data, 0)
		}
		tx.ZAdd(ctx, x.heldKey(), redis.Z{Member: heldMember(it.HeldAt, it.ID)})
		if it.ReleaseAt.IsZero() {
			tx.ZRem(ctx, x.dueKey(), it.ID)
		} else {
			tx.ZAdd(ctx, x.dueKey(), redis.Z{Score: float64(it.ReleaseAt.UnixMilli()), Member: it.ID})
		}
		return nil
	})
	return err
}

func (x *redisIndex) insert(ctx context.Context, it Item) error {
	if err := x.write(ctx, it, true); err != nil {
		return fmt.Errorf("quarantine: hold %s: record: %w", it.ID, err)
	}
	return nil
}

func (x *redisIndex) update(ctx context.Context, it Item) error {
	// Callers hold the item's claim: nobody removes it meanwhile.
	n, err := x.c.Exists(ctx, x.itemKey(it.ID)).Result()
	if err != nil {
		return fmt.Errorf("quarantine: update %s: %w", it.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("update %s: %w", it.ID, ErrNotFound)
	}
	if err := x.write(ctx, it, false); err != nil {
		return fmt.Errorf("quarantine: update %s: %w", it.ID, err)
	}
	return nil
}

func (x *redisIndex) remove(ctx context.Context, id string) error {
	it, err := x.get(ctx, id)
	if err != nil {
		return err
	}
	_, err = x.c.TxPipelined(ctx, func(tx redis.Pipeliner) error {
		tx.Del(ctx, x.itemKey(id))
		tx.ZRem(ctx, x.heldKey(), heldMember(it.HeldAt, id))
		tx.ZRem(ctx, x.dueKey(), id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("quarantine: delete %s: %w", id, err)
	}
	return nil
}

func (x *redisIndex) get(ctx context.Context, id string) (Item, error) {
	data, err := x.c.Get(ctx, x.itemKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Item{}, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Item{}, fmt.Errorf("quarantine: get %s: %w", id, err)
	}
	var it Item
	if err := json.Unmarshal(data, &it); err != nil {
		return Item{}, fmt.Errorf("quarantine: get %s: %w", id, err)
	}
	return it, nil
}

// items reads the items of held-set members, in order, skipping any that
// went away between the two reads.
func (x *redisIndex) items(ctx context.Context, members []string) ([]Item, error) {
	items := []Item{}
	if len(members) == 0 {
		return items, nil
	}
	keys := make([]string, len(members))
	for i, mem := range members {
		keys[i] = x.itemKey(idOfMember(mem))
	}
	vals, err := x.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue // removed meanwhile
		}
		var it Item
		if err := json.Unmarshal([]byte(s), &it); err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, nil
}

func idOfMember(m string) string {
	if len(m) > 21 {
		return m[21:]
	}
	return ""
}

func (x *redisIndex) list(ctx context.Context) ([]Item, error) {
	members, err := x.c.ZRange(ctx, x.heldKey(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("quarantine: list: %w", err)
	}
	items, err := x.items(ctx, members)
	if err != nil {
		return nil, fmt.Errorf("quarantine: list: %w", err)
	}
	return items, nil
}

func (x *redisIndex) page(ctx context.Context, after Cursor, limit int) ([]Item, bool, error) {
	min := "-"
	if after.ID != "" {
		min = "(" + heldMember(after.HeldAt, after.ID)
	}
	members, err := x.c.ZRangeByLex(ctx, x.heldKey(), &redis.ZRangeBy{Min: min, Max: "+", Count: int64(limit + 1)}).Result()
	if err != nil {
		return nil, false, fmt.Errorf("quarantine: page: %w", err)
	}
	more := len(members) > limit
	if more {
		members = members[:limit]
	}
	items, err := x.items(ctx, members)
	if err != nil {
		return nil, false, fmt.Errorf("quarantine: page: %w", err)
	}
	return items, more, nil
}

func (x *redisIndex) due(ctx context.Context, now time.Time) ([]string, error) {
	return x.c.ZRangeByScore(ctx, x.dueKey(), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10)}).Result()
}

func (x *redisIndex) nextDue(ctx context.Context) (time.Time, bool, error) {
	zs, err := x.c.ZRangeWithScores(ctx, x.dueKey(), 0, 0).Result()
	if err != nil || len(zs) == 0 {
		return time.Time{}, false, err
	}
	return time.UnixMilli(int64(zs[0].Score)), true, nil
}

func (x *redisIndex) expired(ctx context.Context, before time.Time) ([]string, error) {
	members, err := x.c.ZRangeByLex(ctx, x.heldKey(), &redis.ZRangeBy{Min: "-",
		Max: "(" + fmt.Sprintf("%020d", before.UnixNano())}).Result()
	if err != nil {
		return nil, err
	}
	items, err := x.items(ctx, members)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, it := range items {
		if it.ReleaseAt.IsZero() {
			ids = append(ids, it.ID)
		}
	}
	return ids, nil
}

// unclaimScript deletes a claim only when this instance still owns it.
var unclaimScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// renewScript extends a claim only when this instance still owns it.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`)

func (x *redisIndex) claim(ctx context.Context, id string) (bool, error) {
	ok, err := x.c.SetNX(ctx, x.claimKey(id), x.leases.token, x.leases.lease).Result()
	if err != nil || !ok {
		return false, err
	}
	x.leases.keep(id, func(ctx context.Context) {
		renewScript.Run(ctx, x.c, []string{x.claimKey(id)}, x.leases.token, x.leases.lease.Milliseconds())
	})
	return true, nil
}

func (x *redisIndex) unclaim(id string) {
	x.leases.drop(id)
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	unclaimScript.Run(ctx, x.c, []string{x.claimKey(id)}, x.leases.token)
}
