package store

import (
	"context"
	"fmt"
	"strings"
)

// FileIndex tells which blob IDs a file record owns, so blobs left behind
// by a crash between publishing a blob and writing its record can be found.
type FileIndex interface {
	// KnownFiles returns the subset of ids that have a file record.
	KnownFiles(ctx context.Context, ids []string) (map[string]bool, error)
}

var _ FileIndex = (*SQLite)(nil)

// KnownFiles returns which of ids are in the files table.
func (s *SQLite) KnownFiles(ctx context.Context, ids []string) (map[string]bool, error) {
	known := make(map[string]bool, len(ids))
	const chunk = 500 // well under SQLite's bound on host parameters
	for start := 0; start < len(ids); start += chunk {
		part := ids[start:min(start+chunk, len(ids))]
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		q := `SELECT id FROM files WHERE id IN (?` + strings.Repeat(",?", len(part)-1) + `)`
		rows, err := s.db.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("known files: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("known files: %w", err)
			}
			known[id] = true
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("known files: %w", err)
		}
	}
	return known, nil
}
