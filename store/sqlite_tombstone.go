package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// tombstoneComponent versions the tombstone table apart from the main
// schema, so it can grow independently of storeMigrations.
const tombstoneComponent = "store_tombstones"

var tombstoneMigrations = []string{
	`CREATE TABLE link_tombstones (
		token_hash BLOB PRIMARY KEY,
		state      TEXT NOT NULL,
		at         INTEGER NOT NULL, -- unix ns, UTC
		keep_until INTEGER NOT NULL
	);
	CREATE INDEX link_tombstones_keep ON link_tombstones(keep_until);`,
}

func migrateTombstones(ctx context.Context, db *sql.DB) error {
	return Migrate(ctx, db, tombstoneComponent, tombstoneMigrations)
}

// BuryLinks writes the tombstones of a file's links in one transaction.
func (s *SQLite) BuryLinks(ctx context.Context, fileID string, keepUntil time.Time) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("bury links of file %s: %w", fileID, err)
	}
	defer tx.Rollback()
	var fileExpires time.Time
	err = tx.QueryRowContext(ctx, `SELECT expires_at FROM files WHERE id = ?`, fileID).Scan(nanoTime{&fileExpires})
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("bury links of file %s: %w", fileID, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("bury links of file %s: %w", fileID, err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT `+linkColumnsBare+` FROM links WHERE file_id = ?`, fileID)
	if err != nil {
		return 0, fmt.Errorf("bury links of file %s: %w", fileID, err)
	}
	var links []Link
	for rows.Next() {
		var l Link
		if err := rows.Scan(linkDest(&l)...); err != nil {
			rows.Close()
			return 0, fmt.Errorf("bury links of file %s: %w", fileID, err)
		}
		normaliseLink(&l)
		links = append(links, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("bury links of file %s: %w", fileID, err)
	}
	for _, l := range links {
		t := TombstoneFor(l, fileExpires, keepUntil)
		if _, err := tx.ExecContext(ctx, `INSERT INTO link_tombstones (token_hash, state, at, keep_until)
			VALUES (?, ?, ?, ?) ON CONFLICT (token_hash) DO UPDATE SET
			state = excluded.state, at = excluded.at, keep_until = excluded.keep_until`,
			t.TokenHash, t.State, toNanos(t.At), toNanos(t.KeepUntil)); err != nil {
			return 0, fmt.Errorf("bury link %s: %w", l.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("bury links of file %s: commit: %w", fileID, err)
	}
	return len(links), nil
}

// TombstoneByTokenHash finds a live tombstone.
func (s *SQLite) TombstoneByTokenHash(ctx context.Context, hash []byte, now time.Time) (Tombstone, error) {
	var t Tombstone
	var at, keep int64
	err := s.db.QueryRowContext(ctx, `SELECT token_hash, state, at, keep_until FROM link_tombstones
		WHERE token_hash = ? AND keep_until > ?`, hash, toNanos(now)).Scan(&t.TokenHash, &t.State, &at, &keep)
	if errors.Is(err, sql.ErrNoRows) {
		return Tombstone{}, fmt.Errorf("tombstone: %w", ErrNotFound)
	}
	if err != nil {
		return Tombstone{}, fmt.Errorf("tombstone: %w", err)
	}
	t.At, t.KeepUntil = fromNanos(at), fromNanos(keep)
	return t, nil
}

// PurgeTombstones deletes the tombstones past their KeepUntil.
func (s *SQLite) PurgeTombstones(ctx context.Context, now time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM link_tombstones WHERE keep_until <= ?`, toNanos(now))
	if err != nil {
		return 0, fmt.Errorf("purge tombstones: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("purge tombstones: %w", err)
	}
	return int(n), nil
}
