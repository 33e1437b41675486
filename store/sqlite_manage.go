package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"
)

// accessComponent versions the access tables apart from storeMigrations,
// like the tombstones.
const accessComponent = "store_access"

var accessMigrations = []string{
	`CREATE TABLE accesses (
		seq         INTEGER PRIMARY KEY AUTOINCREMENT,
		message_id  TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
		file_id     TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
		link_id     TEXT NOT NULL,
		kind        TEXT NOT NULL,
		at          INTEGER NOT NULL, -- unix ns, UTC
		recipient   TEXT NOT NULL,
		client_addr TEXT NOT NULL
	);
	CREATE INDEX accesses_message ON accesses(message_id, seq);
	CREATE INDEX accesses_file ON accesses(file_id);
	-- Who has downloaded a file at all: kept apart from accesses, which are
	-- trimmed, so a first-download notice is never sent twice.
	CREATE TABLE file_downloaders (
		file_id   TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
		recipient TEXT NOT NULL,
		PRIMARY KEY (file_id, recipient)
	);`,
}

func migrateAccesses(ctx context.Context, db *sql.DB) error {
	return Migrate(ctx, db, accessComponent, accessMigrations)
}

// validAccess checks what both backends refuse.
func validAccess(a Access) error {
	switch {
	case a.FileID == "":
		return errors.New("file ID is empty")
	case a.Kind != AccessView && a.Kind != AccessDownload:
		return fmt.Errorf("unknown access kind %q", a.Kind)
	case a.At.IsZero():
		return errors.New("access time not set")
	}
	return nil
}

// ValidExpiry reports whether t can be stored as an expiry by every
// backend: set, after 1970 and before 2262 (Unix nanoseconds in int64).
func ValidExpiry(t time.Time) bool {
	return !t.IsZero() && t.After(time.Unix(0, 0)) && t.Before(time.Unix(0, math.MaxInt64))
}

// RecordAccess records a view or download in one transaction with the
// first-download check.
func (s *SQLite) RecordAccess(ctx context.Context, a Access) (bool, error) {
	if err := validAccess(a); err != nil {
		return false, fmt.Errorf("record access to file %s: %w", a.FileID, err)
	}
	tx, err := s.db.BeginTx(ctx, nil) // immediate: the check and the insert are one step
	if err != nil {
		return false, fmt.Errorf("record access to file %s: %w", a.FileID, err)
	}
	defer tx.Rollback()
	var messageID string
	err = tx.QueryRowContext(ctx, `SELECT message_id FROM files WHERE id = ?`, a.FileID).Scan(&messageID)
	if errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("record access to file %s: %w", a.FileID, ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("record access to file %s: %w", a.FileID, err)
	}
	if a.MessageID != "" && a.MessageID != messageID {
		return false, fmt.Errorf("record access to file %s: file belongs to message %s, not %s", a.FileID, messageID, a.MessageID)
	}
	first := false
	if a.Kind == AccessDownload {
		if a.Recipient == "" {
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM file_downloaders WHERE file_id = ? LIMIT 1`, a.FileID).Scan(&one)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				first = true
			case err != nil:
				return false, fmt.Errorf("record access to file %s: %w", a.FileID, err)
			}
		}
		res, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO file_downloaders (file_id, recipient) VALUES (?, ?)`, a.FileID, a.Recipient)
		if err != nil {
			return false, fmt.Errorf("record access to file %s: %w", a.FileID, err)
		}
		if a.Recipient != "" {
			n, err := res.RowsAffected()
			if err != nil {
				return false, fmt.Errorf("record access to file %s: %w", a.FileID, err)
			}
			first = n == 1
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO accesses (message_id, file_id, link_id, kind, at, recipient, client_addr)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, messageID, a.FileID, a.LinkID, a.Kind, toNanos(a.At), a.Recipient, a.ClientAddr); err != nil {
		return false, fmt.Errorf("record access to file %s: %w", a.FileID, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM accesses WHERE message_id = ? AND seq NOT IN
		(SELECT seq FROM accesses WHERE message_id = ? ORDER BY seq DESC LIMIT ?)`,
		messageID, messageID, MaxAccessesPerMessage); err != nil {
		return false, fmt.Errorf("record access to file %s: trim: %w", a.FileID, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("record access to file %s: commit: %w", a.FileID, err)
	}
	return first, nil
}

// Accesses lists a message's access records, oldest first.
func (s *SQLite) Accesses(ctx context.Context, messageID string) ([]Access, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT message_id, link_id, file_id, kind, at, recipient, client_addr
		FROM accesses WHERE message_id = ? ORDER BY seq`, messageID)
	if err != nil {
		return nil, fmt.Errorf("accesses of message %s: %w", messageID, err)
	}
	defer rows.Close()
	var out []Access
	for rows.Next() {
		var a Access
		if err := rows.Scan(&a.MessageID, &a.LinkID, &a.FileID, &a.Kind, nanoTime{&a.At}, &a.Recipient, &a.ClientAddr); err != nil {
			return nil, fmt.Errorf("accesses of message %s: %w", messageID, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("accesses of message %s: %w", messageID, err)
	}
	return out, nil
}

// RevokeMessage revokes every link of a message not revoked yet.
func (s *SQLite) RevokeMessage(ctx context.Context, messageID string, now time.Time) (int, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("revoke message %s: %w", messageID, err)
	}
	defer tx.Rollback()
	if err := messageExists(ctx, tx, messageID); err != nil {
		return 0, fmt.Errorf("revoke message %s: %w", messageID, err)
	}
	res, err := tx.ExecContext(ctx, `UPDATE links SET revoked_at = ? WHERE revoked_at IS NULL
		AND file_id IN (SELECT id FROM files WHERE message_id = ?)`, toNanos(now), messageID)
	if err != nil {
		return 0, fmt.Errorf("revoke message %s: %w", messageID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("revoke message %s: %w", messageID, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("revoke message %s: commit: %w", messageID, err)
	}
	return int(n), nil
}

// SetMessageExpiry sets the expiry of every file and link of a message.
func (s *SQLite) SetMessageExpiry(ctx context.Context, messageID string, t time.Time) error {
	if !ValidExpiry(t) {
		return fmt.Errorf("set expiry of message %s: %v is not a storable expiry (1970-2262)", messageID, t)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("set expiry of message %s: %w", messageID, err)
	}
	defer tx.Rollback()
	if err := messageExists(ctx, tx, messageID); err != nil {
		return fmt.Errorf("set expiry of message %s: %w", messageID, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE files SET expires_at = ? WHERE message_id = ?`, toNanos(t), messageID); err != nil {
		return fmt.Errorf("set expiry of message %s: files: %w", messageID, err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE links SET expires_at = ?
		WHERE file_id IN (SELECT id FROM files WHERE message_id = ?)`, toNanos(t), messageID); err != nil {
		return fmt.Errorf("set expiry of message %s: links: %w", messageID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("set expiry of message %s: commit: %w", messageID, err)
	}
	return nil
}

func messageExists(ctx context.Context, tx *sql.Tx, id string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM messages WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}
