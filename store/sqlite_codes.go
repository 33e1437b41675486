package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// codesComponent versions the verification tables apart from the main
// schema.
const codesComponent = "store_codes"

var codesMigrations = []string{
	`CREATE TABLE verify_codes (
		subject    BLOB NOT NULL,
		code_hash  BLOB NOT NULL,
		expires_at INTEGER NOT NULL, -- unix ns, UTC
		PRIMARY KEY (subject, code_hash)
	);
	CREATE INDEX verify_codes_expires ON verify_codes(expires_at);
	CREATE TABLE verify_state (
		subject      BLOB PRIMARY KEY,
		failures     INTEGER NOT NULL,
		last_failure INTEGER NOT NULL,
		locked_until INTEGER NOT NULL,
		keep_until   INTEGER NOT NULL
	);
	CREATE INDEX verify_state_keep ON verify_state(keep_until);
	CREATE TABLE rate_limits (
		key        TEXT PRIMARY KEY,
		count      INTEGER NOT NULL,
		window_end INTEGER NOT NULL
	);
	CREATE INDEX rate_limits_end ON rate_limits(window_end);`,
}

func migrateCodes(ctx context.Context, db *sql.DB) error {
	return Migrate(ctx, db, codesComponent, codesMigrations)
}

// AddCode stores a code hash for subject, valid until expires, unless the
// subject is locked (ErrLocked). It also removes every expired code,
// lockout and rate window of the database, so abandoned state does not
// pile up: code requests are rate-limited, so this runs rarely.
func (s *SQLite) AddCode(ctx context.Context, subject, codeHash []byte, expires, now time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("add code: %w", err)
	}
	defer tx.Rollback()
	n := toNanos(now)
	for _, q := range []string{
		`DELETE FROM verify_codes WHERE expires_at <= ?`,
		`DELETE FROM verify_state WHERE keep_until <= ?`,
		`DELETE FROM rate_limits WHERE window_end <= ?`,
	} {
		if _, err := tx.ExecContext(ctx, q, n); err != nil {
			return fmt.Errorf("add code: clean up: %w", err)
		}
	}
	var locked int64
	err = tx.QueryRowContext(ctx, `SELECT locked_until FROM verify_state WHERE subject = ?`, subject).Scan(&locked)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("add code: %w", err)
	}
	if locked > n {
		return fmt.Errorf("add code: %w", ErrLocked)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO verify_codes (subject, code_hash, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (subject, code_hash) DO UPDATE SET expires_at = excluded.expires_at`,
		subject, codeHash, toNanos(expires)); err != nil {
		return fmt.Errorf("add code: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("add code: commit: %w", err)
	}
	return nil
}

// CheckCode checks and counts one code attempt in one write transaction
// (BEGIN IMMEDIATE), so concurrent attempts are serialised: at most
// MaxFailures wrong codes are ever counted before the lock, and a code
// matches once.
func (s *SQLite) CheckCode(ctx context.Context, subject, codeHash []byte, lim CodeLimits, now time.Time) (CodeCheck, error) {
	if lim.MaxFailures < 1 || lim.LockFor <= 0 {
		return CodeCheck{}, fmt.Errorf("check code: bad limits %+v", lim)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return CodeCheck{}, fmt.Errorf("check code: %w", err)
	}
	defer tx.Rollback()
	n := toNanos(now)
	var failures int
	var lastFailure, locked int64
	err = tx.QueryRowContext(ctx, `SELECT failures, last_failure, locked_until FROM verify_state WHERE subject = ?`,
		subject).Scan(&failures, &lastFailure, &locked)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return CodeCheck{}, fmt.Errorf("check code: %w", err)
	}
	if locked > n {
		return CodeCheck{Outcome: CodeLocked, LockedUntil: fromNanos(locked)}, nil
	}
	var one int
	err = tx.QueryRowContext(ctx, `SELECT 1 FROM verify_codes WHERE subject = ? AND code_hash = ? AND expires_at > ?`,
		subject, codeHash, n).Scan(&one)
	switch {
	case err == nil:
		for _, q := range []string{`DELETE FROM verify_codes WHERE subject = ?`, `DELETE FROM verify_state WHERE subject = ?`} {
			if _, err := tx.ExecContext(ctx, q, subject); err != nil {
				return CodeCheck{}, fmt.Errorf("check code: %w", err)
			}
		}
		if err := tx.Commit(); err != nil {
			return CodeCheck{}, fmt.Errorf("check code: commit: %w", err)
		}
		return CodeCheck{Outcome: CodeOK}, nil
	case !errors.Is(err, sql.ErrNoRows):
		return CodeCheck{}, fmt.Errorf("check code: %w", err)
	}
	if lastFailure+int64(lim.LockFor) <= n {
		failures = 0
	}
	failures++
	res := CodeCheck{Outcome: CodeWrong, Failures: failures}
	locked = 0
	if failures >= lim.MaxFailures {
		locked = n + int64(lim.LockFor)
		res = CodeCheck{Outcome: CodeLockedNow, Failures: failures, LockedUntil: fromNanos(locked)}
		failures = 0
		if _, err := tx.ExecContext(ctx, `DELETE FROM verify_codes WHERE subject = ?`, subject); err != nil {
			return CodeCheck{}, fmt.Errorf("check code: %w", err)
		}
	}
	keep := n + int64(lim.LockFor+codeStateGrace)
	if _, err := tx.ExecContext(ctx, `INSERT INTO verify_state (subject, failures, last_failure, locked_until, keep_until)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (subject) DO UPDATE SET failures = excluded.failures,
		last_failure = excluded.last_failure, locked_until = excluded.locked_until, keep_until = excluded.keep_until`,
		subject, failures, n, locked, keep); err != nil {
		return CodeCheck{}, fmt.Errorf("check code: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return CodeCheck{}, fmt.Errorf("check code: commit: %w", err)
	}
	return res, nil
}

// HitLimit counts one event in key's fixed window (opened at the first
// event, window long) and reports whether the count is within limit.
func (s *SQLite) HitLimit(ctx context.Context, key string, limit int, window time.Duration, now time.Time) (bool, error) {
	if window <= 0 {
		return false, fmt.Errorf("rate limit %s: window %s", key, window)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("rate limit %s: %w", key, err)
	}
	defer tx.Rollback()
	n := toNanos(now)
	var count int
	var end int64
	err = tx.QueryRowContext(ctx, `SELECT count, window_end FROM rate_limits WHERE key = ?`, key).Scan(&count, &end)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("rate limit %s: %w", key, err)
	}
	if end <= n {
		count, end = 0, n+int64(window)
	}
	count++
	if _, err := tx.ExecContext(ctx, `INSERT INTO rate_limits (key, count, window_end) VALUES (?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET count = excluded.count, window_end = excluded.window_end`,
		key, count, end); err != nil {
		return false, fmt.Errorf("rate limit %s: %w", key, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("rate limit %s: commit: %w", key, err)
	}
	return count <= limit, nil
}
