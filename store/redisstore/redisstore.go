// Package redisstore is the scale-out store.Store: messages, files, links
// and download counters in Redis (go-redis v9), shared by every gateway
// instance, so any instance serves any link and download limits hold across
// all of them.
//
// Every operation that reads and then writes runs as one Lua script, so it
// is atomic across instances (no check-then-decrement). Keys carry TTLs a
// week beyond their expiry as a backstop; the expiry janitor still removes
// files (and their blobs) through ExpiredFiles and DeleteFile, driven by a
// sorted-set index. Every call is bounded by Options.Timeout, so an outage
// turns into a quick error (451 on SMTP, 503 on the link server) rather than
// a hang, and go-redis reconnects on its own when Redis returns.
package redisstore

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/store"
)

const (
	// DefaultTimeout bounds dial, read and write when Options.Timeout is 0.
	DefaultTimeout = 3 * time.Second
	// DefaultKeyPrefix namespaces the keys when Options.KeyPrefix is "".
	DefaultKeyPrefix = "attachgate:"
	// ttlGrace keeps metadata this long past its expiry: the janitor
	// normally deletes it within a minute, the TTL only cleans up after a
	// janitor that never ran. An expired link stays findable meanwhile, so
	// its page says "expired" rather than "not found".
	ttlGrace = 7 * 24 * time.Hour
)

// Options configures the connection; it mirrors config store.redis.
type Options struct {
	// URL is redis://[user:pass@]host:port/db or rediss:// for TLS. With a
	// master_name query parameter (redis://sentinel:26379/0?master_name=m
	// &addr=sentinel2:26379) it names Sentinels, and the client follows
	// the primary they report.
	URL string
	// KeyPrefix starts every key; DefaultKeyPrefix when "".
	KeyPrefix string
	// Username and Password authenticate to Redis (to the primary, with
	// Sentinel); they override the URL's user info.
	Username, Password string
	// TLS forces TLS even for a redis:// URL.
	TLS bool
	// Timeout bounds dialling, each read and each write; DefaultTimeout
	// when 0. A whole store call takes at most twice this.
	Timeout time.Duration
}

// Store is the Redis store.Store. It is safe for concurrent use.
type Store struct {
	client  redis.UniversalClient
	prefix  string
	timeout time.Duration
	// byExpiry is the sorted set of file IDs by expiry.
	byExpiry string
}

var _ store.Store = (*Store)(nil)

// NewClient builds the go-redis client Options describe, without
// connecting. Open uses it; the audit log shares the client Store.Client
// returns.
func NewClient(o Options) (redis.UniversalClient, error) {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	tlsServerName := u.Hostname()
	var universal redis.UniversalOptions
	if u.Query().Has("master_name") {
		fo, err := redis.ParseFailoverURL(o.URL)
		if err != nil {
			return nil, fmt.Errorf("redis url (sentinel): %w", err)
		}
		universal = redis.UniversalOptions{
			Addrs: fo.SentinelAddrs, MasterName: fo.MasterName, DB: fo.DB,
			SentinelUsername: fo.SentinelUsername, SentinelPassword: fo.SentinelPassword,
			Username: fo.Username, Password: fo.Password, TLSConfig: fo.TLSConfig,
		}
		tlsServerName = "" // the primary's name is known only at run time
	} else {
		so, err := redis.ParseURL(o.URL)
		if err != nil {
			return nil, fmt.Errorf("redis url: %w", err)
		}
		universal = redis.UniversalOptions{
			Addrs: []string{so.Addr}, DB: so.DB,
			Username: so.Username, Password: so.Password, TLSConfig: so.TLSConfig,
		}
	}
	if o.Username != "" {
		universal.Username = o.Username
	}
	if o.Password != "" {
		universal.Password = o.Password
	}
	if o.TLS && universal.TLSConfig == nil {
		universal.TLSConfig = &tls.Config{ServerName: tlsServerName, MinVersion: tls.VersionTLS12}
	}
	universal.DialTimeout = timeout
	universal.ReadTimeout = timeout
	universal.WriteTimeout = timeout
	universal.PoolTimeout = timeout
	// A context deadline shorter than the timeouts wins.
	universal.ContextTimeoutEnabled = true
	// No automatic retry: a command whose reply was lost may have run
	// (a download counted, a message stored), and running it again would
	// count twice. The caller's client retries instead (SMTP 451, HTTP 503).
	universal.MaxRetries = -1
	// Refused dials fail after one quick retry instead of five; go-redis
	// keeps probing in the background and reconnects when Redis is back.
	universal.DialerRetries = 2
	universal.ClientName = "attachgate"
	return redis.NewUniversalClient(&universal), nil
}

// Open connects to Redis, checks that it answers and returns the store.
func Open(ctx context.Context, o Options) (*Store, error) {
	client, err := NewClient(o)
	if err != nil {
		return nil, fmt.Errorf("open redis store: %w", err)
	}
	s := New(client, o.KeyPrefix, o.Timeout)
	if err := s.Ping(ctx); err != nil {
		client.Close()
		return nil, fmt.Errorf("open redis store: %w", err)
	}
	return s, nil
}

// New wraps an existing client. prefix "" means DefaultKeyPrefix; timeout
// 0 means DefaultTimeout. Close closes the client.
func New(client redis.UniversalClient, prefix string, timeout time.Duration) *Store {
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Store{client: client, prefix: prefix, timeout: timeout, byExpiry: prefix + "files:by-expiry"}
}

// Client returns the underlying client, for the audit log to share.
func (s *Store) Client() redis.UniversalClient { return s.client }

// KeyPrefix returns the prefix every key of this store starts with.
func (s *Store) KeyPrefix() string { return s.prefix }

// Close closes the client.
func (s *Store) Close() error {
	if err := s.client.Close(); err != nil {
		return fmt.Errorf("close redis store: %w", err)
	}
	return nil
}

// bound limits one store call to a dial plus one command.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 2*s.timeout)
}

// Ping checks that Redis answers, for health checks.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// Persistence reports whether the server writes an append-only file (aof)
// or RDB snapshots (rdb). Without either, links and audit events are lost
// when Redis restarts; the daemon warns at start-up. When CONFIG is not
// allowed (managed services often rename it), it falls back to INFO
// persistence, which shows AOF but not the snapshot schedule: rdb is then
// reported false.
func (s *Store) Persistence(ctx context.Context) (aof, rdb bool, err error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	cfg, cfgErr := s.client.ConfigGet(ctx, "appendonly").Result()
	if cfgErr == nil {
		save, err := s.client.ConfigGet(ctx, "save").Result()
		if err != nil {
			return false, false, fmt.Errorf("redis persistence: config get save: %w", err)
		}
		return cfg["appendonly"] == "yes", strings.TrimSpace(save["save"]) != "", nil
	}
	info, err := s.client.Info(ctx, "persistence").Result()
	if err != nil {
		return false, false, fmt.Errorf("redis persistence: config get: %v; info: %w", cfgErr, err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "aof_enabled:"); ok {
			return v == "1", false, nil
		}
	}
	return false, false, fmt.Errorf("redis persistence: config get: %v; info has no aof_enabled", cfgErr)
}

func (s *Store) messageKey(id string) string { return s.prefix + "msg:" + id }
func (s *Store) linkKey(id string) string    { return s.prefix + "link:" + id }
func (s *Store) tokenKey(hash []byte) string { return s.prefix + "token:" + hex.EncodeToString(hash) }

// CreateMessage records m with its files and links atomically: all of them
// or, when any ID or token hash is already taken, none.
func (s *Store) CreateMessage(ctx context.Context, m store.Message, files []store.File, links []store.Link) error {
	if err := validateMessage(m, files, links); err != nil {
		return fmt.Errorf("create message %s: %w", m.ID, err)
	}
	args, err := s.createArgs(m, files, links)
	if err != nil {
		return fmt.Errorf("create message %s: %w", m.ID, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := createMessageScript.Run(ctx, s.client, []string{s.messageKey(m.ID)}, args...).Err(); err != nil {
		return fmt.Errorf("create message %s: %w", m.ID, err)
	}
	return nil
}

// createArgs lays out the script's ARGV (see createMessageScript).
func (s *Store) createArgs(m store.Message, files []store.File, links []store.Link) ([]any, error) {
	recipients, err := json.Marshal(nonNil(m.Recipients))
	if err != nil {
		return nil, fmt.Errorf("recipients: %w", err)
	}
	args := []any{s.prefix, strconv.FormatInt(keyTTL(m, files, links).Milliseconds(), 10)}
	record := func(kind, id, extra1, extra2 string, fields ...string) {
		args = append(args, kind, id, extra1, extra2, strconv.Itoa(len(fields)))
		for _, f := range fields {
			args = append(args, f)
		}
	}
	pageHash, manageHash := hex.EncodeToString(m.PageTokenHash), hex.EncodeToString(m.ManageTokenHash)
	record("m", m.ID, pageHash, manageHash,
		"id", m.ID, "message_id", m.MessageID, "sender", m.Sender, "recipients", string(recipients),
		"client_addr", m.ClientAddr, "auth_user", m.AuthUser, "created_at", nanos(m.CreatedAt),
		"subject", m.Subject, "lang", m.Lang, "verify", m.Verify, "notify_sender", m.NotifySender,
		"page_token_hash", pageHash, "manage_token_hash", manageHash)
	for _, f := range files {
		record("f", f.ID, expiryScore(f.ExpiresAt), "",
			"id", f.ID, "message_id", m.ID, "name", f.Name, "content_type", f.ContentType,
			"size", strconv.FormatInt(f.Size, 10), "sha256", f.SHA256, "key_id", f.KeyID,
			"created_at", nanos(f.CreatedAt), "expires_at", nanos(f.ExpiresAt))
	}
	for _, l := range links {
		tokenHash := hex.EncodeToString(l.TokenHash)
		fields := []string{"id", l.ID, "file_id", l.FileID, "token_hash", tokenHash,
			"created_at", nanos(l.CreatedAt), "expires_at", nanos(l.ExpiresAt),
			"max_downloads", strconv.Itoa(l.MaxDownloads), "downloads", strconv.Itoa(l.Downloads)}
		if !l.RevokedAt.IsZero() {
			fields = append(fields, "revoked_at", nanos(l.RevokedAt))
		}
		record("l", l.ID, l.FileID, tokenHash, fields...)
	}
	return args, nil
}

// keyTTL is how long the message's keys live once stored: the longest
// lifetime among its files and links plus ttlGrace. It is counted from
// the moment Redis stores them, not from an absolute time, so clock skew
// between the gateway and Redis cannot expire metadata early.
func keyTTL(m store.Message, files []store.File, links []store.Link) time.Duration {
	created := m.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	var lifetime time.Duration
	for _, f := range files {
		lifetime = max(lifetime, f.ExpiresAt.Sub(created))
	}
	for _, l := range links {
		lifetime = max(lifetime, l.ExpiresAt.Sub(created))
	}
	return lifetime + ttlGrace
}

// expiryScore is the sorted-set score of an expiry: Unix microseconds,
// which float64 holds exactly until the year 2255. ExpiredFiles checks
// the exact nanoseconds itself.
func expiryScore(t time.Time) string {
	return strconv.FormatInt(t.UnixMicro(), 10)
}

// validateMessage catches what the SQLite schema would refuse, and what
// the Lua scripts rely on (times they compare are after 1970).
func validateMessage(m store.Message, files []store.File, links []store.Link) error {
	if m.ID == "" {
		return errors.New("message ID is empty")
	}
	fileIDs := make(map[string]bool, len(files))
	for _, f := range files {
		switch {
		case f.ID == "":
			return errors.New("file ID is empty")
		case fileIDs[f.ID]:
			return fmt.Errorf("file %s appears twice", f.ID)
		case f.MessageID != "" && f.MessageID != m.ID:
			return fmt.Errorf("file %s belongs to message %s", f.ID, f.MessageID)
		case !storable(f.ExpiresAt):
			return fmt.Errorf("file %s: ExpiresAt %v not set or outside 1970-2262", f.ID, f.ExpiresAt)
		}
		fileIDs[f.ID] = true
	}
	linkIDs := make(map[string]bool, len(links))
	tokens := make(map[string]bool, len(links))
	for _, l := range links {
		switch {
		case l.ID == "":
			return errors.New("link ID is empty")
		case linkIDs[l.ID]:
			return fmt.Errorf("link %s appears twice", l.ID)
		case !fileIDs[l.FileID]:
			return fmt.Errorf("link %s: file %q is not part of this message", l.ID, l.FileID)
		case len(l.TokenHash) == 0:
			return fmt.Errorf("link %s: TokenHash not set", l.ID)
		case tokens[string(l.TokenHash)]:
			return fmt.Errorf("link %s: token hash appears twice", l.ID)
		case !storable(l.ExpiresAt):
			return fmt.Errorf("link %s: ExpiresAt %v not set or outside 1970-2262", l.ID, l.ExpiresAt)
		case l.MaxDownloads < 0:
			return fmt.Errorf("link %s: negative MaxDownloads", l.ID)
		}
		linkIDs[l.ID], tokens[string(l.TokenHash)] = true, true
	}
	return nil
}

// storable: t is set and its Unix nanoseconds are positive and in range.
func storable(t time.Time) bool {
	return !t.IsZero() && t.After(time.Unix(0, 0)) && t.Before(time.Unix(0, math.MaxInt64))
}

// DeleteMessage removes a message with its files and links and returns the
// removed files.
func (s *Store) DeleteMessage(ctx context.Context, id string) ([]store.File, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	reply, err := deleteMessageScript.Run(ctx, s.client, []string{s.messageKey(id)}, s.prefix).Slice()
	if err != nil {
		return nil, fmt.Errorf("delete message %s: %w", id, err)
	}
	if len(reply) == 0 || reply[0] != int64(1) {
		return nil, fmt.Errorf("delete message %s: %w", id, store.ErrNotFound)
	}
	var files []store.File
	if len(reply) > 1 {
		rows, _ := reply[1].([]any)
		for _, row := range rows {
			f, err := parseFile(fieldMap(row))
			if err != nil {
				return nil, fmt.Errorf("delete message %s: %w", id, err)
			}
			files = append(files, f)
		}
	}
	return files, nil
}

// LinkByTokenHash finds a link, with its file and message, by token hash.
func (s *Store) LinkByTokenHash(ctx context.Context, hash []byte) (store.LinkView, error) {
	v, err := s.linkView(ctx, s.tokenKey(hash), "token")
	if err != nil {
		return store.LinkView{}, fmt.Errorf("link by token: %w", err)
	}
	return v, nil
}

// LinkByID finds a link, with its file and message, by link ID.
func (s *Store) LinkByID(ctx context.Context, id string) (store.LinkView, error) {
	v, err := s.linkView(ctx, s.linkKey(id), "id")
	if err != nil {
		return store.LinkView{}, fmt.Errorf("link %s: %w", id, err)
	}
	return v, nil
}

func (s *Store) messageTokenKey(kind store.MessageToken, hash []byte) string {
	if kind == store.ManageToken {
		return s.prefix + "mtoken:manage:" + hex.EncodeToString(hash)
	}
	return s.prefix + "mtoken:page:" + hex.EncodeToString(hash)
}

// MessageByTokenHash finds a message by its page or manage token hash.
func (s *Store) MessageByTokenHash(ctx context.Context, kind store.MessageToken, hash []byte) (store.MessageView, error) {
	if len(hash) == 0 {
		return store.MessageView{}, fmt.Errorf("message by token: %w", store.ErrNotFound)
	}
	v, err := s.messageView(ctx, s.messageTokenKey(kind, hash), "token")
	if err != nil {
		return store.MessageView{}, fmt.Errorf("message by token: %w", err)
	}
	return v, nil
}

// MessageByID finds a message by its ID.
func (s *Store) MessageByID(ctx context.Context, id string) (store.MessageView, error) {
	v, err := s.messageView(ctx, s.messageKey(id), "id")
	if err != nil {
		return store.MessageView{}, fmt.Errorf("message %s: %w", id, err)
	}
	return v, nil
}

func (s *Store) messageView(ctx context.Context, key, by string) (store.MessageView, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	reply, err := messageViewScript.Run(ctx, s.client, []string{key}, s.prefix, by).Slice()
	if err != nil {
		return store.MessageView{}, err
	}
	if len(reply) < 2 {
		return store.MessageView{}, store.ErrNotFound
	}
	var mv store.MessageView
	if mv.Message, err = parseMessage(fieldMap(reply[0])); err != nil {
		return store.MessageView{}, err
	}
	for _, item := range reply[1:] {
		pair, _ := item.([]any)
		if len(pair) != 2 {
			return store.MessageView{}, fmt.Errorf("message %s: malformed reply", mv.Message.ID)
		}
		v := store.LinkView{Message: mv.Message}
		if v.Link, err = parseLink(fieldMap(pair[0])); err != nil {
			return store.MessageView{}, err
		}
		if v.File, err = parseFile(fieldMap(pair[1])); err != nil {
			return store.MessageView{}, err
		}
		mv.Links = append(mv.Links, v)
	}
	slices.SortFunc(mv.Links, func(a, b store.LinkView) int {
		if c := strings.Compare(a.File.ID, b.File.ID); c != 0 {
			return c
		}
		return strings.Compare(a.Link.ID, b.Link.ID)
	})
	return mv, nil
}

func (s *Store) linkView(ctx context.Context, key, by string) (store.LinkView, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	reply, err := linkViewScript.Run(ctx, s.client, []string{key}, s.prefix, by).Slice()
	if err != nil {
		return store.LinkView{}, err
	}
	if len(reply) != 3 {
		return store.LinkView{}, store.ErrNotFound
	}
	var v store.LinkView
	if v.Link, err = parseLink(fieldMap(reply[0])); err != nil {
		return store.LinkView{}, err
	}
	if v.File, err = parseFile(fieldMap(reply[1])); err != nil {
		return store.LinkView{}, err
	}
	if v.Message, err = parseMessage(fieldMap(reply[2])); err != nil {
		return store.LinkView{}, err
	}
	return v, nil
}

// CountDownload increments the link's counter if it is usable at now, in
// one atomic script: concurrent downloads on several instances cannot
// overrun MaxDownloads.
func (s *Store) CountDownload(ctx context.Context, linkID string, now time.Time) (store.Link, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	reply, err := countDownloadScript.Run(ctx, s.client, []string{s.linkKey(linkID)}, comparableNanos(now)).Slice()
	if err != nil {
		return store.Link{}, fmt.Errorf("count download %s: %w", linkID, err)
	}
	if len(reply) == 0 {
		return store.Link{}, fmt.Errorf("count download %s: empty reply", linkID)
	}
	outcome, _ := reply[0].(int64)
	switch outcome {
	case countOK:
	case countNotFound:
		return store.Link{}, fmt.Errorf("count download %s: %w", linkID, store.ErrNotFound)
	case countRevoked:
		return store.Link{}, fmt.Errorf("count download %s: %w", linkID, store.ErrRevoked)
	case countExpired:
		return store.Link{}, fmt.Errorf("count download %s: %w", linkID, store.ErrExpired)
	case countLimit:
		return store.Link{}, fmt.Errorf("count download %s: %w", linkID, store.ErrLimit)
	default:
		return store.Link{}, fmt.Errorf("count download %s: unexpected outcome %v", linkID, reply[0])
	}
	if len(reply) < 2 {
		return store.Link{}, fmt.Errorf("count download %s: reply without link", linkID)
	}
	l, err := parseLink(fieldMap(reply[1]))
	if err != nil {
		return store.Link{}, fmt.Errorf("count download %s: %w", linkID, err)
	}
	return l, nil
}

// RevokeLink marks a link revoked at now; revoking again keeps the first
// time.
func (s *Store) RevokeLink(ctx context.Context, linkID string, now time.Time) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	known, err := revokeLinkScript.Run(ctx, s.client, []string{s.linkKey(linkID)}, nanos(now)).Int()
	if err != nil {
		return fmt.Errorf("revoke link %s: %w", linkID, err)
	}
	if known == 0 {
		return fmt.Errorf("revoke link %s: %w", linkID, store.ErrNotFound)
	}
	return nil
}

// ExpiredFiles lists up to limit files whose ExpiresAt is before now,
// oldest first; limit <= 0 means no limit. A file whose metadata Redis
// already dropped by TTL is still listed, with its ID and expiry only, so
// the janitor removes its blob.
func (s *Store) ExpiredFiles(ctx context.Context, now time.Time, limit int) ([]store.File, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	// Scores are whole microseconds: fetch everything up to now's
	// microsecond, then compare nanoseconds.
	by := &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMicro(), 10)}
	if limit > 0 {
		by.Count = int64(limit)
	}
	entries, err := s.client.ZRangeByScoreWithScores(ctx, s.byExpiry, by).Result()
	if err != nil {
		return nil, fmt.Errorf("expired files: %w", err)
	}
	if len(entries) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(entries))
	_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range entries {
			cmds[i] = p.HGetAll(ctx, s.prefix+"file:"+e.Member.(string))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("expired files: %w", err)
	}
	files := make([]store.File, 0, len(entries))
	for i, e := range entries {
		id := e.Member.(string)
		fields := cmds[i].Val()
		var f store.File
		if len(fields) == 0 {
			f = store.File{ID: id, ExpiresAt: time.UnixMicro(int64(e.Score)).UTC()}
		} else if f, err = parseFile(fields); err != nil {
			return nil, fmt.Errorf("expired files: %w", err)
		}
		if f.ExpiresAt.Before(now) {
			files = append(files, f)
		}
	}
	return files, nil
}

// DeleteFile removes a file and its links, and its message when this was
// the message's last file.
func (s *Store) DeleteFile(ctx context.Context, id string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	known, err := deleteFileScript.Run(ctx, s.client, []string{s.prefix + "file:" + id}, s.prefix, id).Int()
	if err != nil {
		return fmt.Errorf("delete file %s: %w", id, err)
	}
	if known == 0 {
		return fmt.Errorf("delete file %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// nanos encodes a time as decimal Unix nanoseconds; the zero time is "0".
func nanos(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixNano(), 10)
}

// comparableNanos is nanos for the scripts' string comparison, which
// needs a non-negative number: an instant before 1970 is before every
// stored expiry anyway.
func comparableNanos(t time.Time) string {
	if !t.After(time.Unix(0, 0)) {
		return "0"
	}
	return nanos(t)
}

func parseNanos(s string) (time.Time, error) {
	ns, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	if ns == 0 {
		return time.Time{}, nil
	}
	return time.Unix(0, ns).UTC(), nil
}

// fieldMap turns a script's HGETALL reply (a flat list) into a map.
func fieldMap(v any) map[string]string {
	flat, _ := v.([]any)
	m := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		val, _ := flat[i+1].(string)
		m[k] = val
	}
	return m
}

// fieldParser collects the first parse error of a record's fields.
type fieldParser struct {
	fields map[string]string
	err    error
}

func (p *fieldParser) time(name string) time.Time {
	v, ok := p.fields[name]
	if !ok {
		return time.Time{}
	}
	t, err := parseNanos(v)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("field %s: %w", name, err)
	}
	return t
}

func (p *fieldParser) int(name string) int64 {
	n, err := strconv.ParseInt(p.fields[name], 10, 64)
	if err != nil && p.err == nil {
		p.err = fmt.Errorf("field %s: %w", name, err)
	}
	return n
}

func parseMessage(fields map[string]string) (store.Message, error) {
	p := fieldParser{fields: fields}
	m := store.Message{
		ID: fields["id"], MessageID: fields["message_id"], Sender: fields["sender"],
		ClientAddr: fields["client_addr"], AuthUser: fields["auth_user"], CreatedAt: p.time("created_at"),
		Subject: fields["subject"], Lang: fields["lang"], Verify: fields["verify"], NotifySender: fields["notify_sender"],
	}
	for name, dst := range map[string]*[]byte{"page_token_hash": &m.PageTokenHash, "manage_token_hash": &m.ManageTokenHash} {
		if h := fields[name]; h != "" {
			var err error
			if *dst, err = hex.DecodeString(h); err != nil && p.err == nil {
				p.err = fmt.Errorf("field %s: %w", name, err)
			}
		}
	}
	if p.err == nil {
		if err := json.Unmarshal([]byte(fields["recipients"]), &m.Recipients); err != nil {
			p.err = fmt.Errorf("field recipients: %w", err)
		}
	}
	if p.err != nil {
		return store.Message{}, fmt.Errorf("message %s: %w", m.ID, p.err)
	}
	return m, nil
}

func parseFile(fields map[string]string) (store.File, error) {
	p := fieldParser{fields: fields}
	f := store.File{
		ID: fields["id"], MessageID: fields["message_id"], Name: fields["name"],
		ContentType: fields["content_type"], Size: p.int("size"), SHA256: fields["sha256"],
		KeyID: fields["key_id"], CreatedAt: p.time("created_at"), ExpiresAt: p.time("expires_at"),
	}
	if p.err != nil {
		return store.File{}, fmt.Errorf("file %s: %w", f.ID, p.err)
	}
	return f, nil
}

func parseLink(fields map[string]string) (store.Link, error) {
	p := fieldParser{fields: fields}
	l := store.Link{
		ID: fields["id"], FileID: fields["file_id"], CreatedAt: p.time("created_at"),
		ExpiresAt: p.time("expires_at"), RevokedAt: p.time("revoked_at"),
		MaxDownloads: int(p.int("max_downloads")), Downloads: int(p.int("downloads")),
	}
	if h := fields["token_hash"]; h != "" {
		var err error
		if l.TokenHash, err = hex.DecodeString(h); err != nil && p.err == nil {
			p.err = fmt.Errorf("field token_hash: %w", err)
		}
	}
	if p.err != nil {
		return store.Link{}, fmt.Errorf("link %s: %w", l.ID, p.err)
	}
	return l, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
