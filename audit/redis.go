package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisLog is the audit log kept in Redis, shared by every gateway instance
// of a deployment. Its keys (p = prefix):
//
//	p audit:events  stream, one entry per event; the fields are the columns
//	                of the SQLite table, in the same order for every entry
//	p audit:head    hash {seq, hash}: the newest event, which the next links to
//	p audit:anchor  hash {seq, hash, floor}: the last event a retention
//	                purge removed, and the first stream ID still in the log
//
// Appending is optimistic: read the head while WATCHing it, compute the
// event's hash in Go, then XADD and move the head in one MULTI/EXEC. When
// another instance appended first, EXEC fails and the append starts again
// from the new head, so seq stays gap-free and the chain linear however
// many instances record at once.
//
// Retention mirrors SQLiteLog: Purge removes a prefix of the chain dated
// before RetentionCutoff and, in one transaction, moves the anchor past it
// and appends the audit.purged event that states it. The removal is logical
// first (the anchor's floor: readers start there), then physical: every
// XADD trims with MINID ~ floor (approximate, whole stream nodes, cheap),
// and Purge ends with an exact XTRIM MINID floor, the hard bound. Trimming
// at XADD time with a cutoff of its own would drop events the anchor does
// not account for, and Verify would rightly call that tampering.
//
// Stream IDs come from the Redis clock and only order the entries; an
// event's time is the gateway's, in the time_ns field, as in SQLite.
type RedisLog struct {
	settings
	client    redis.UniversalClient
	eventsKey string
	headKey   string
	anchorKey string

	// writeMu queues this process's writers here, so optimistic retries
	// happen only between instances.
	writeMu sync.Mutex
}

const (
	// redisDefaultPrefix matches the store's default key prefix.
	redisDefaultPrefix = "attachgate:"
	// maxAppendAttempts bounds the optimistic retries of one append.
	maxAppendAttempts = 100
	// scanPageSize is the COUNT of each XRANGE page: export, verify and
	// purge stream the log in pages of this many events.
	scanPageSize = 512
	// verifyAttempts bounds how often Verify starts over because a purge
	// moved the anchor while it read.
	verifyAttempts = 3
)

// errAnchorMoved makes a purge start over: another instance purged first.
var errAnchorMoved = errors.New("purge anchor moved")

// NewRedis returns the audit log kept in Redis under prefix ("" means
// "attachgate:", the store's default). The log does not close client.
func NewRedis(client redis.UniversalClient, prefix string, opts Options) (*RedisLog, error) {
	if client == nil {
		return nil, errors.New("audit: NewRedis: nil client")
	}
	cfg, err := newSettings(opts)
	if err != nil {
		return nil, err
	}
	if prefix == "" {
		prefix = redisDefaultPrefix
	}
	return &RedisLog{
		settings:  cfg,
		client:    client,
		eventsKey: prefix + "audit:events",
		headKey:   prefix + "audit:head",
		anchorKey: prefix + "audit:anchor",
	}, nil
}

// Record appends e. It sets e.Time when zero, and always sets Seq, PrevHash
// and Hash (values the caller put there are ignored). Invalid UTF-8 in
// text fields is stored as U+FFFD.
func (l *RedisLog) Record(ctx context.Context, e Event) error {
	_, err := l.record(ctx, e)
	return err
}

// RecordAll appends events in order. Each is its own Redis transaction
// (the chain head is optimistic-locked per event), so unlike SQLite a
// failure half way leaves the first events in place; none is lost or
// reordered.
func (l *RedisLog) RecordAll(ctx context.Context, events []Event) error {
	if err := checkBatch(events); err != nil {
		return err
	}
	for _, e := range events {
		if _, err := l.record(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

// record is Record returning the stored event, for tests.
func (l *RedisLog) record(ctx context.Context, e Event) (Event, error) {
	if e.Type == "" {
		return Event{}, errors.New("audit: record: event without type")
	}
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	stored, err := l.appendEvent(ctx, e, nil)
	if err != nil {
		return Event{}, fmt.Errorf("audit: record %s: %w", e.Type, err)
	}
	return stored, nil
}

// redisAnchor is the anchor with the stream position the log starts at.
type redisAnchor struct {
	anchor
	floor string // first stream ID in the log; "" before any purge
}

// start is where reading the log begins.
func (a redisAnchor) start() string {
	if a.floor == "" {
		return "-"
	}
	return a.floor
}

// anchorMove is a purge's change to the anchor, applied by appendEvent in
// the transaction that appends the audit.purged event.
type anchorMove struct {
	from, to redisAnchor
}

// appendEvent links e to the head and adds it; with move, it also moves
// the anchor, provided the anchor is still move.from. The caller holds
// writeMu.
func (l *RedisLog) appendEvent(ctx context.Context, e Event, move *anchorMove) (Event, error) {
	watched := []string{l.headKey}
	if move != nil {
		watched = append(watched, l.anchorKey)
	}
	for attempt := 1; ; attempt++ {
		var stored Event
		err := l.client.Watch(ctx, func(tx *redis.Tx) error {
			var headCmd, anchorCmd *redis.SliceCmd
			_, err := tx.Pipelined(ctx, func(p redis.Pipeliner) error {
				headCmd = p.HMGet(ctx, l.headKey, "seq", "hash")
				anchorCmd = p.HMGet(ctx, l.anchorKey, "seq", "hash", "floor")
				return nil
			})
			if err != nil {
				return fmt.Errorf("read chain head: %w", err)
			}
			a, err := parseAnchor(anchorCmd.Val())
			if err != nil {
				return err
			}
			lastSeq, lastHash := a.seq, a.hash
			if head := headCmd.Val(); len(head) == 2 && head[0] != nil {
				if lastSeq, err = strconv.ParseInt(fmt.Sprint(head[0]), 10, 64); err != nil {
					return fmt.Errorf("read chain head: seq %v: %w", head[0], err)
				}
				lastHash, _ = head[1].(string)
			}
			if move != nil && move.to.seq > lastSeq {
				// Reanchor: the log continues from the new anchor.
				lastSeq, lastHash = move.to.seq, move.to.hash
			}
			if err := l.head.checkAhead(lastSeq); err != nil {
				// Another instance may have appended and moved the head
				// file on between our read of the chain head and now:
				// then the watched head changed too and this is a lost
				// race, not lost events.
				if cur, rerr := l.client.HGet(ctx, l.headKey, "seq").Int64(); rerr == nil && cur > lastSeq {
					return redis.TxFailedErr
				}
				return err
			}
			floor := a.floor
			if move != nil {
				if a != move.from {
					return errAnchorMoved
				}
				floor = move.to.floor
			}
			sealed, err := l.seal(e, lastSeq, lastHash)
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				if move != nil {
					p.HSet(ctx, l.anchorKey, "seq", move.to.seq, "hash", move.to.hash, "floor", move.to.floor)
				}
				p.XAdd(ctx, &redis.XAddArgs{
					Stream: l.eventsKey,
					MinID:  floor, // "" adds no trimming
					Approx: true,
					ID:     "*",
					Values: streamValues(&sealed),
				})
				p.HSet(ctx, l.headKey, "seq", sealed.Seq, "hash", sealed.Hash)
				return nil
			})
			stored = sealed.Event
			return err
		}, watched...)
		if err == nil {
			if l.head != nil {
				l.advanceHead(ctx, stored.Seq, stored.Hash)
			}
			return stored, nil
		}
		if !errors.Is(err, redis.TxFailedErr) {
			return Event{}, err
		}
		if attempt == maxAppendAttempts {
			return Event{}, fmt.Errorf("chain head kept changing: gave up after %d attempts: %w", attempt, err)
		}
		// Another instance appended first. A short random pause keeps two
		// instances from colliding again in lockstep.
		pause := time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(time.Millisecond)))
		select {
		case <-ctx.Done():
			return Event{}, ctx.Err()
		case <-time.After(pause):
		}
	}
}

func (l *RedisLog) readAnchor(ctx context.Context, c redis.Cmdable) (redisAnchor, error) {
	vals, err := c.HMGet(ctx, l.anchorKey, "seq", "hash", "floor").Result()
	if err != nil {
		return redisAnchor{}, fmt.Errorf("read purge anchor: %w", err)
	}
	return parseAnchor(vals)
}

// parseAnchor reads HMGET anchor seq hash floor; all nil before any purge.
func parseAnchor(vals []any) (redisAnchor, error) {
	if len(vals) != 3 || vals[0] == nil {
		return redisAnchor{}, nil
	}
	var a redisAnchor
	var err error
	if a.seq, err = strconv.ParseInt(fmt.Sprint(vals[0]), 10, 64); err != nil {
		return redisAnchor{}, fmt.Errorf("read purge anchor: seq %v: %w", vals[0], err)
	}
	a.hash, _ = vals[1].(string)
	a.floor, _ = vals[2].(string)
	a.set = true
	return a, nil
}

// streamValues lays out an event as stream fields, always all of them in
// one order: Redis then stores the field names once per stream node.
func streamValues(s *sealedEvent) []any {
	e := &s.Event
	return []any{
		"seq", e.Seq, "time_ns", s.timeNS, "type", string(e.Type), "actor", e.Actor,
		"client_addr", e.ClientAddr, "user_agent", e.UserAgent, "auth_user", e.AuthUser,
		"helo", e.Helo, "message_id", e.MessageID, "header_id", e.HeaderID,
		"sender", e.Sender, "recipients", s.recipients, "size", e.Size,
		"file_id", e.FileID, "file_name", e.FileName, "content_type", e.ContentType,
		"sha256", e.SHA256, "link_id", e.LinkID, "expires", s.expires,
		"reason", e.Reason, "reply", e.Reply, "detail", e.Detail,
		"prev_hash", e.PrevHash, "hash", e.Hash, "mac", e.MAC,
	}
}

// rowFromEntry fills row from a stream entry; row's buffers are reused.
func rowFromEntry(m redis.XMessage, row *storedRow) error {
	str := func(name string) string {
		s, _ := m.Values[name].(string)
		return s
	}
	var err error
	integer := func(name string) int64 {
		n, perr := strconv.ParseInt(str(name), 10, 64)
		if perr != nil && err == nil {
			err = fmt.Errorf("stream entry %s: field %s: %w", m.ID, name, perr)
		}
		return n
	}
	row.Seq = integer("seq")
	row.TimeNS = integer("time_ns")
	row.Size = integer("size")
	row.Type = str("type")
	row.Actor = str("actor")
	row.ClientAddr = str("client_addr")
	row.UserAgent = str("user_agent")
	row.AuthUser = str("auth_user")
	row.Helo = str("helo")
	row.MessageID = str("message_id")
	row.HeaderID = str("header_id")
	row.Sender = str("sender")
	row.Recipients = append(row.Recipients[:0], str("recipients")...)
	row.FileID = str("file_id")
	row.FileName = str("file_name")
	row.ContentType = str("content_type")
	row.SHA256 = str("sha256")
	row.LinkID = str("link_id")
	row.Expires = str("expires")
	row.Reason = str("reason")
	row.Reply = str("reply")
	row.Detail = str("detail")
	row.PrevHash = str("prev_hash")
	row.Hash = str("hash")
	row.MAC = str("mac")
	return err
}

// scan reads the stream from start ("-" or a stream ID, inclusive) in
// pages and calls fn for each entry until fn returns false.
func (l *RedisLog) scan(ctx context.Context, start string, fn func(id string, row *storedRow) (bool, error)) error {
	var row storedRow
	for {
		page, err := l.client.XRangeN(ctx, l.eventsKey, start, "+", scanPageSize).Result()
		if err != nil {
			return fmt.Errorf("read events from %s: %w", start, err)
		}
		for _, m := range page {
			if err := rowFromEntry(m, &row); err != nil {
				return err
			}
			more, err := fn(m.ID, &row)
			if err != nil || !more {
				return err
			}
		}
		if len(page) < scanPageSize {
			return nil
		}
		start = "(" + page[len(page)-1].ID // exclusive: Redis 6.2 and later
	}
}

// Export writes the events q selects, in seq order, to w, exactly as
// SQLiteLog.Export does. The stream is read in pages and filtered here, so
// memory does not grow with the number of events; retention bounds the
// length of the scan.
func (l *RedisLog) Export(ctx context.Context, q Query, w io.Writer, format string, bom bool) error {
	return writeExport(w, format, bom, l.loc, func(emit func(*storedRow) error) error {
		a, err := l.readAnchor(ctx, l.client)
		if err != nil {
			return err
		}
		filter := l.newRowFilter(q)
		return l.scan(ctx, a.start(), func(_ string, row *storedRow) (bool, error) {
			ok, err := filter.match(row)
			if err != nil || !ok {
				return err == nil, err
			}
			return true, emit(row)
		})
	})
}

// Verify recomputes the hash chain in seq order from the purge anchor,
// stops at the first broken event and writes a one-line report to w (nil
// for none), with the same rules as SQLiteLog.Verify. Redis has no read
// snapshot: when a purge moves the anchor while Verify reads (a break seen
// then may be the purge trimming ahead of it), Verify starts over from
// the new anchor.
func (l *RedisLog) Verify(ctx context.Context, w io.Writer) (VerifyResult, error) {
	res, err := l.verify(ctx)
	return reportVerify(res, err, w)
}

func (l *RedisLog) verify(ctx context.Context) (VerifyResult, error) {
	vh := l.readVerifyHead()
	for attempt := 1; ; attempt++ {
		a, err := l.readAnchor(ctx, l.client)
		if err != nil {
			return VerifyResult{}, err
		}
		check := newChainCheck(a.anchor)
		check.vh = vh
		err = l.scan(ctx, a.start(), func(_ string, row *storedRow) (bool, error) {
			return check.add(row)
		})
		if err != nil {
			return check.res, err
		}
		res := check.result()
		if res.OK() || attempt == verifyAttempts {
			return res, nil
		}
		after, err := l.readAnchor(ctx, l.client)
		if err != nil {
			return res, err
		}
		if after == a {
			return res, nil
		}
	}
}

// Purge deletes the events dated before RetentionCutoff and returns how
// many it deleted, with the same rules as SQLiteLog.Purge: only a prefix
// of the chain goes, the anchor moves to its last event, and an
// audit.purged event states it, all in one transaction. The entries then
// leave the stream with an exact XTRIM.
func (l *RedisLog) Purge(ctx context.Context) (int64, error) {
	cutoff := l.RetentionCutoff()
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	for attempt := 1; ; attempt++ {
		removed, floor, err := l.purgeOnce(ctx, cutoff)
		if errors.Is(err, errAnchorMoved) && attempt < maxAppendAttempts {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("audit: purge before %s: %w", cutoff.Format(time.RFC3339), err)
		}
		if floor != "" {
			// The hard bound. Failing here loses nothing: readers already
			// start at the floor, and the next purge trims again.
			if err := l.client.XTrimMinID(ctx, l.eventsKey, floor).Err(); err != nil {
				l.logger.WarnContext(ctx, "audit retention: trimming the stream failed; retried at the next purge",
					"min_id", floor, "err", err)
			}
		}
		return removed, nil
	}
}

// purgeOnce finds the expired prefix and removes it. It returns the floor
// to trim the stream to ("" when there is none yet).
func (l *RedisLog) purgeOnce(ctx context.Context, cutoff time.Time) (int64, string, error) {
	from, err := l.readAnchor(ctx, l.client)
	if err != nil {
		return 0, "", err
	}
	cutoffNS := clampNanos(cutoff)
	var stmt purgeStatement
	var lastID string
	// The scan runs outside the transaction: the prefix it finds is old
	// and does not change, and watching the head through a long scan would
	// lose to every concurrent append. appendEvent re-checks the anchor.
	err = l.scan(ctx, from.start(), func(id string, row *storedRow) (bool, error) {
		if row.TimeNS >= cutoffNS {
			return false, nil
		}
		stmt.removed++
		stmt.lastSeq, stmt.lastHash, lastID = row.Seq, row.Hash, id
		return true, nil
	})
	if err != nil {
		return 0, "", err
	}
	if stmt.removed == 0 {
		return 0, from.floor, nil
	}
	floor, err := nextStreamID(lastID)
	if err != nil {
		return 0, "", err
	}
	stmt.before = cutoff.Format(time.RFC3339)
	move := &anchorMove{from: from, to: redisAnchor{
		anchor: anchor{seq: stmt.lastSeq, hash: stmt.lastHash, set: true},
		floor:  floor,
	}}
	_, err = l.appendEvent(ctx, Event{Type: TypeAuditPurged, Actor: ActorSystem, Detail: stmt.detail()}, move)
	if err != nil {
		if errors.Is(err, errAnchorMoved) {
			return 0, "", err
		}
		return 0, "", fmt.Errorf("record purge: %w", err)
	}
	return stmt.removed, floor, nil
}

// nextStreamID is the smallest stream ID after id ("ms-seq").
func nextStreamID(id string) (string, error) {
	ms, seq, ok := strings.Cut(id, "-")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil {
		return "", fmt.Errorf("stream ID %q: want ms-seq", id)
	}
	return ms + "-" + strconv.FormatUint(n+1, 10), nil
}

// RunRetention purges at once and then every interval (daily when every
// is not positive) until ctx is done, as SQLiteLog.RunRetention. Every
// instance may run it: the purges agree through the anchor.
func (l *RedisLog) RunRetention(ctx context.Context, every time.Duration) {
	l.runRetention(ctx, every, l.Purge)
}
