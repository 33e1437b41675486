package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnavailable wraps every refusal of a Guard: the metadata store cannot
// be used now. The SMTP side answers it with 451 4.3.0, the link server
// with a 503 page, /healthz with 503; neither logs it per message, as the
// Guard logs each change of state once.
var ErrUnavailable = errors.New("metadata store unavailable")

// ErrDatasetLost is the refusal while the store is not the dataset this
// instance was serving: its generation marker is missing or different
// (Redis restarted empty, FLUSHALL, failover to an empty replica, an
// SQLite file replaced), or the audit log ends before its head recorded
// outside the store. Nothing is written until an operator runs
// `attachgate recover` and restarts the instances.
var ErrDatasetLost = fmt.Errorf("%w: dataset lost (generation marker missing or changed; run attachgate recover)", ErrUnavailable)

// Guard states.
const (
	stateHealthy int32 = iota
	stateUnreachable
	stateLost
)

// Guard is a Store that refuses every call while its backend is
// unreachable or is no longer the dataset it was opened on. A checker
// (Run) pings the backend and compares its generation marker with the one
// this instance serves, every interval and at once after a failed call,
// so an outage or a Redis that came back empty is noticed within seconds.
// Each change of state is logged once: ERROR when refusing starts, INFO
// with the number of refused calls when it ends.
type Guard struct {
	inner    Store
	gen      Generation
	ping     func(context.Context) error
	expected string
	log      *slog.Logger
	interval time.Duration

	state   atomic.Int32
	refused atomic.Int64
	kick    chan struct{}

	mu           sync.Mutex // serialises state changes and their log lines
	reason       string
	reasonSticky bool // lost by MarkLost: a good marker does not end it
}

var _ Store = (*Guard)(nil)

// NewGuard guards inner, which must also implement Generation and
// Ping(ctx) error; expected is the generation this instance serves.
// interval is the period of the check while healthy (5s when 0).
func NewGuard(inner Store, expected string, interval time.Duration, log *slog.Logger) (*Guard, error) {
	gen, ok := inner.(Generation)
	if !ok {
		return nil, fmt.Errorf("store guard: %T has no generation marker", inner)
	}
	p, ok := inner.(interface{ Ping(context.Context) error })
	if !ok {
		return nil, fmt.Errorf("store guard: %T cannot be pinged", inner)
	}
	if interval <= 0 {
		interval = 5 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "store")
	return &Guard{inner: inner, gen: gen, ping: p.Ping, expected: expected, log: log,
		interval: interval, kick: make(chan struct{}, 1)}, nil
}

// Inner returns the guarded store.
func (g *Guard) Inner() Store { return g.inner }

// Run checks the backend until ctx ends: every interval while healthy,
// every second while refusing, and at once when a call failed.
func (g *Guard) Run(ctx context.Context) {
	for {
		g.Probe(ctx)
		wait := g.interval
		if g.state.Load() != stateHealthy {
			wait = min(wait, time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-g.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

// Probe checks the backend once and moves to the state it finds.
func (g *Guard) Probe(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := g.ping(pctx); err != nil {
		if ctx.Err() == nil {
			g.set(stateUnreachable, err.Error())
		}
		return
	}
	gen, err := g.gen.Generation(pctx)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			g.set(stateUnreachable, err.Error())
		}
	case gen == "":
		g.set(stateLost, fmt.Sprintf("the dataset has no generation marker (want %s): it came back empty or was replaced", g.expected))
	case gen != g.expected:
		g.set(stateLost, fmt.Sprintf("the dataset's generation marker is %s, want %s: it was replaced", gen, g.expected))
	default:
		g.mu.Lock()
		sticky := g.reasonSticky
		g.mu.Unlock()
		if !sticky {
			g.set(stateHealthy, "")
		}
	}
}

// MarkLost puts the guard into the refusing state for a reason found
// outside the store (the audit log ends before its head); only a restart
// after `attachgate recover` ends it.
func (g *Guard) MarkLost(reason string) {
	g.mu.Lock()
	g.reasonSticky = true
	g.mu.Unlock()
	g.set(stateLost, reason)
}

func (g *Guard) set(state int32, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.state.Load()
	if old == state {
		return
	}
	g.state.Store(state)
	g.reason = reason
	refused := g.refused.Swap(0)
	switch state {
	case stateHealthy:
		g.log.Info("metadata store usable again: accepting mail and serving links", "refused_while_unavailable", refused)
	case stateUnreachable:
		g.log.Error("metadata store unreachable: refusing mail (451 4.3.0) and link pages (503) until it answers; further refusals are counted, not logged",
			"err", reason)
	case stateLost:
		g.log.Error("metadata store is not the dataset this instance served: refusing mail (451 4.3.0) and link pages (503), writing nothing; inspect with `attachgate recover -config FILE`",
			"reason", reason, "generation", g.expected)
	}
}

// Check returns nil while the store may be used, else the refusal
// (wrapping ErrUnavailable), counted for the next state-change log line.
// Unwrap is the guarded store, for callers that must reach the backend
// itself (the pipeline's shared SQLite transaction); they call Check first.
func (g *Guard) Unwrap() Store { return g.inner }

func (g *Guard) Check() error {
	switch g.state.Load() {
	case stateHealthy:
		return nil
	case stateLost:
		g.refused.Add(1)
		return ErrDatasetLost
	default:
		g.refused.Add(1)
		return fmt.Errorf("%w: backend unreachable", ErrUnavailable)
	}
}

// Observe passes a backend call's error on; an unexpected one makes the
// checker look at once, and is marked ErrUnavailable when the backend
// turns out unusable.
func (g *Guard) Observe(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrExpired) ||
		errors.Is(err, ErrRevoked) || errors.Is(err, ErrLimit) || errors.Is(err, ErrLocked) || errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
		return err
	}
	select {
	case g.kick <- struct{}{}:
	default:
	}
	if g.state.Load() != stateHealthy {
		g.refused.Add(1)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// Refusing reports whether the guard refuses calls now.
func (g *Guard) Refusing() bool { return g.state.Load() != stateHealthy }

// Ping is the backend's ping, refused while the guard refuses.
func (g *Guard) Ping(ctx context.Context) error {
	if err := g.Check(); err != nil {
		return err
	}
	return g.Observe(ctx, g.ping(ctx))
}

func (g *Guard) CreateMessage(ctx context.Context, m Message, files []File, links []Link) error {
	if err := g.Check(); err != nil {
		return err
	}
	return g.Observe(ctx, g.inner.CreateMessage(ctx, m, files, links))
}

func (g *Guard) DeleteMessage(ctx context.Context, id string) ([]File, error) {
	if err := g.Check(); err != nil {
		return nil, err
	}
	files, err := g.inner.DeleteMessage(ctx, id)
	return files, g.Observe(ctx, err)
}

func (g *Guard) LinkByTokenHash(ctx context.Context, hash []byte) (LinkView, error) {
	if err := g.Check(); err != nil {
		return LinkView{}, err
	}
	v, err := g.inner.LinkByTokenHash(ctx, hash)
	return v, g.Observe(ctx, err)
}

func (g *Guard) LinkByID(ctx context.Context, id string) (LinkView, error) {
	if err := g.Check(); err != nil {
		return LinkView{}, err
	}
	v, err := g.inner.LinkByID(ctx, id)
	return v, g.Observe(ctx, err)
}

func (g *Guard) MessageByTokenHash(ctx context.Context, kind MessageToken, hash []byte) (MessageView, error) {
	if err := g.Check(); err != nil {
		return MessageView{}, err
	}
	v, err := g.inner.MessageByTokenHash(ctx, kind, hash)
	return v, g.Observe(ctx, err)
}

func (g *Guard) MessageByID(ctx context.Context, id string) (MessageView, error) {
	if err := g.Check(); err != nil {
		return MessageView{}, err
	}
	v, err := g.inner.MessageByID(ctx, id)
	return v, g.Observe(ctx, err)
}

func (g *Guard) CountDownload(ctx context.Context, linkID string, now time.Time) (Link, error) {
	if err := g.Check(); err != nil {
		return Link{}, err
	}
	l, err := g.inner.CountDownload(ctx, linkID, now)
	return l, g.Observe(ctx, err)
}

func (g *Guard) RevokeLink(ctx context.Context, linkID string, now time.Time) error {
	if err := g.Check(); err != nil {
		return err
	}
	return g.Observe(ctx, g.inner.RevokeLink(ctx, linkID, now))
}

func (g *Guard) ExpiredFiles(ctx context.Context, now time.Time, limit int) ([]File, error) {
	if err := g.Check(); err != nil {
		return nil, err
	}
	f, err := g.inner.ExpiredFiles(ctx, now, limit)
	return f, g.Observe(ctx, err)
}

func (g *Guard) DeleteFile(ctx context.Context, id string) error {
	if err := g.Check(); err != nil {
		return err
	}
	return g.Observe(ctx, g.inner.DeleteFile(ctx, id))
}

// Close closes the guarded store.
func (g *Guard) Close() error { return g.inner.Close() }

func (g *Guard) BuryLinks(ctx context.Context, fileID string, keepUntil time.Time) (int, error) {
	if err := g.Check(); err != nil {
		return 0, err
	}
	n, err := g.inner.BuryLinks(ctx, fileID, keepUntil)
	return n, g.Observe(ctx, err)
}

func (g *Guard) TombstoneByTokenHash(ctx context.Context, hash []byte, now time.Time) (Tombstone, error) {
	if err := g.Check(); err != nil {
		return Tombstone{}, err
	}
	t, err := g.inner.TombstoneByTokenHash(ctx, hash, now)
	return t, g.Observe(ctx, err)
}

func (g *Guard) PurgeTombstones(ctx context.Context, now time.Time) (int, error) {
	if err := g.Check(); err != nil {
		return 0, err
	}
	n, err := g.inner.PurgeTombstones(ctx, now)
	return n, g.Observe(ctx, err)
}

func (g *Guard) RecordAccess(ctx context.Context, a Access) (bool, error) {
	if err := g.Check(); err != nil {
		return false, err
	}
	first, err := g.inner.RecordAccess(ctx, a)
	return first, g.Observe(ctx, err)
}

func (g *Guard) Accesses(ctx context.Context, messageID string) ([]Access, error) {
	if err := g.Check(); err != nil {
		return nil, err
	}
	a, err := g.inner.Accesses(ctx, messageID)
	return a, g.Observe(ctx, err)
}

func (g *Guard) RevokeMessage(ctx context.Context, messageID string, now time.Time) (int, error) {
	if err := g.Check(); err != nil {
		return 0, err
	}
	n, err := g.inner.RevokeMessage(ctx, messageID, now)
	return n, g.Observe(ctx, err)
}

func (g *Guard) SetMessageExpiry(ctx context.Context, messageID string, t time.Time) error {
	if err := g.Check(); err != nil {
		return err
	}
	return g.Observe(ctx, g.inner.SetMessageExpiry(ctx, messageID, t))
}

func (g *Guard) AddCode(ctx context.Context, subject, codeHash []byte, expires, now time.Time) error {
	if err := g.Check(); err != nil {
		return err
	}
	return g.Observe(ctx, g.inner.AddCode(ctx, subject, codeHash, expires, now))
}

func (g *Guard) CheckCode(ctx context.Context, subject, codeHash []byte, lim CodeLimits, now time.Time) (CodeCheck, error) {
	if err := g.Check(); err != nil {
		return CodeCheck{}, err
	}
	c, err := g.inner.CheckCode(ctx, subject, codeHash, lim, now)
	return c, g.Observe(ctx, err)
}

func (g *Guard) HitLimit(ctx context.Context, key string, limit int, window time.Duration, now time.Time) (bool, error) {
	if err := g.Check(); err != nil {
		return false, err
	}
	ok, err := g.inner.HitLimit(ctx, key, limit, window, now)
	return ok, g.Observe(ctx, err)
}
