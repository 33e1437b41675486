package store

import (
	"context"
	"fmt"
	"strings"
)

// ListLinks lists links for the admin's view (LinkFilter) in one query:
// every filter is part of the WHERE clause, the page is the first Limit
// links by ID after After, so a page costs an index walk over the links
// table, not a read of everything.
func (s *SQLite) ListLinks(ctx context.Context, f LinkFilter) ([]LinkView, error) {
	if err := f.Check(); err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var where []string
	var args []any
	if f.After != "" {
		where, args = append(where, `l.id > ?`), append(args, f.After)
	}
	if f.Sender != "" {
		where, args = append(where, `lower(m.sender) = lower(?)`), append(args, f.Sender)
	}
	if f.Recipient != "" {
		where = append(where, `EXISTS (SELECT 1 FROM json_each(m.recipients) r WHERE lower(r.value) = lower(?))`)
		args = append(args, f.Recipient)
	}
	if !f.From.IsZero() {
		where, args = append(where, `l.created_at >= ?`), append(args, toNanos(f.From))
	}
	if !f.To.IsZero() {
		where, args = append(where, `l.created_at < ?`), append(args, toNanos(f.To))
	}
	const (
		notRevoked = `l.revoked_at IS NULL`
		expired    = `(l.expires_at <= ? OR f.expires_at <= ?)`
		notExpired = `l.expires_at > ? AND f.expires_at > ?`
		atLimit    = `(l.max_downloads > 0 AND l.downloads >= l.max_downloads)`
	)
	now := toNanos(f.Now)
	switch f.State {
	case LinkRevoked:
		where = append(where, `l.revoked_at IS NOT NULL`)
	case LinkExpired:
		where, args = append(where, notRevoked+` AND `+expired), append(args, now, now)
	case LinkLimit:
		where, args = append(where, notRevoked+` AND `+notExpired+` AND `+atLimit), append(args, now, now)
	case LinkActive:
		where, args = append(where, notRevoked+` AND `+notExpired+` AND NOT `+atLimit), append(args, now, now)
	}
	q := `SELECT ` + linkColumns + `, ` + fileColumns + `, ` + messageColumns + `
		FROM links l
		JOIN files f ON f.id = l.file_id
		JOIN messages m ON m.id = f.message_id`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY l.id LIMIT ?`
	args = append(args, f.Limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	defer rows.Close()
	var out []LinkView
	for rows.Next() {
		var v LinkView
		var recipients string
		dest := append(append(linkDest(&v.Link), fileDest(&v.File)...), messageDest(&v.Message, &recipients)...)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("list links: %w", err)
		}
		normaliseLink(&v.Link)
		if err := normaliseMessage(&v.Message, recipients); err != nil {
			return nil, fmt.Errorf("list links: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	return out, nil
}
