package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/attachgate/attachgate/store"
)

// Store wraps s so that failed calls count in
// attachgate_store_errors_total{op}. Answers that are the store's verdict
// (ErrNotFound, ErrExpired, ErrRevoked, ErrLimit, ErrLocked) and a caller that gave up
// (context canceled) are not errors of the store. Methods of s that are
// not listed here pass through uncounted.
func (m *Metrics) Store(s store.Store) store.Store {
	if m == nil {
		return s
	}
	return &countedStore{Store: s, m: m}
}

type countedStore struct {
	store.Store
	m *Metrics
}

// Unwrap returns the wrapped store (for Ping and backend-specific calls).
func (s *countedStore) Unwrap() store.Store { return s.Store }

// Ping passes a health check on when the backend has one.
func (s *countedStore) Ping(ctx context.Context) error {
	p, ok := s.Store.(interface{ Ping(context.Context) error })
	if !ok {
		return nil
	}
	return s.count("ping", p.Ping(ctx))
}

func (s *countedStore) count(op string, err error) error {
	if err != nil && !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrExpired) &&
		!errors.Is(err, store.ErrRevoked) && !errors.Is(err, store.ErrLimit) &&
		!errors.Is(err, store.ErrLocked) &&
		!errors.Is(err, context.Canceled) {
		s.m.StoreError(op)
	}
	return err
}

func (s *countedStore) CreateMessage(ctx context.Context, msg store.Message, files []store.File, links []store.Link) error {
	return s.count("create_message", s.Store.CreateMessage(ctx, msg, files, links))
}

func (s *countedStore) DeleteMessage(ctx context.Context, id string) ([]store.File, error) {
	f, err := s.Store.DeleteMessage(ctx, id)
	return f, s.count("delete_message", err)
}

func (s *countedStore) LinkByTokenHash(ctx context.Context, hash []byte) (store.LinkView, error) {
	v, err := s.Store.LinkByTokenHash(ctx, hash)
	return v, s.count("link_by_token", err)
}

func (s *countedStore) LinkByID(ctx context.Context, id string) (store.LinkView, error) {
	v, err := s.Store.LinkByID(ctx, id)
	return v, s.count("link_by_id", err)
}

func (s *countedStore) MessageByTokenHash(ctx context.Context, kind store.MessageToken, hash []byte) (store.MessageView, error) {
	v, err := s.Store.MessageByTokenHash(ctx, kind, hash)
	return v, s.count("message_by_token", err)
}

func (s *countedStore) MessageByID(ctx context.Context, id string) (store.MessageView, error) {
	v, err := s.Store.MessageByID(ctx, id)
	return v, s.count("message_by_id", err)
}

func (s *countedStore) CountDownload(ctx context.Context, linkID string, now time.Time) (store.Link, error) {
	l, err := s.Store.CountDownload(ctx, linkID, now)
	return l, s.count("count_download", err)
}

func (s *countedStore) RevokeLink(ctx context.Context, linkID string, now time.Time) error {
	return s.count("revoke_link", s.Store.RevokeLink(ctx, linkID, now))
}

func (s *countedStore) ExpiredFiles(ctx context.Context, now time.Time, limit int) ([]store.File, error) {
	f, err := s.Store.ExpiredFiles(ctx, now, limit)
	return f, s.count("expired_files", err)
}

func (s *countedStore) DeleteFile(ctx context.Context, id string) error {
	return s.count("delete_file", s.Store.DeleteFile(ctx, id))
}

func (s *countedStore) BuryLinks(ctx context.Context, fileID string, keepUntil time.Time) (int, error) {
	n, err := s.Store.BuryLinks(ctx, fileID, keepUntil)
	return n, s.count("bury_links", err)
}

func (s *countedStore) TombstoneByTokenHash(ctx context.Context, hash []byte, now time.Time) (store.Tombstone, error) {
	ts, err := s.Store.TombstoneByTokenHash(ctx, hash, now)
	return ts, s.count("tombstone_by_token", err)
}

func (s *countedStore) PurgeTombstones(ctx context.Context, now time.Time) (int, error) {
	n, err := s.Store.PurgeTombstones(ctx, now)
	return n, s.count("purge_tombstones", err)
}

func (s *countedStore) RecordAccess(ctx context.Context, a store.Access) (bool, error) {
	first, err := s.Store.RecordAccess(ctx, a)
	return first, s.count("record_access", err)
}

func (s *countedStore) Accesses(ctx context.Context, messageID string) ([]store.Access, error) {
	a, err := s.Store.Accesses(ctx, messageID)
	return a, s.count("accesses", err)
}

func (s *countedStore) RevokeMessage(ctx context.Context, messageID string, now time.Time) (int, error) {
	n, err := s.Store.RevokeMessage(ctx, messageID, now)
	return n, s.count("revoke_message", err)
}

func (s *countedStore) SetMessageExpiry(ctx context.Context, messageID string, t time.Time) error {
	return s.count("set_message_expiry", s.Store.SetMessageExpiry(ctx, messageID, t))
}

func (s *countedStore) AddCode(ctx context.Context, subject, codeHash []byte, expires, now time.Time) error {
	return s.count("add_code", s.Store.AddCode(ctx, subject, codeHash, expires, now))
}

func (s *countedStore) CheckCode(ctx context.Context, subject, codeHash []byte, lim store.CodeLimits, now time.Time) (store.CodeCheck, error) {
	c, err := s.Store.CheckCode(ctx, subject, codeHash, lim, now)
	return c, s.count("check_code", err)
}

func (s *countedStore) HitLimit(ctx context.Context, key string, limit int, window time.Duration, now time.Time) (bool, error) {
	ok, err := s.Store.HitLimit(ctx, key, limit, window, now)
	return ok, s.count("hit_limit", err)
}
