package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Generation reads and writes the dataset's generation marker: a random ID
// written once when the dataset is initialised. A store that comes back
// without it (Redis restarted empty, FLUSHALL, failover to an empty
// replica, an SQLite file replaced by an empty one) or with another one is
// not the dataset the gateway was using; see Guard.
type Generation interface {
	// Generation returns the marker, "" when the dataset has none.
	Generation(ctx context.Context) (string, error)
	// InitGeneration writes gen unless a marker exists, and returns the
	// marker now in force (gen, or the one another instance wrote first).
	InitGeneration(ctx context.Context, gen string) (string, error)
}

var _ Generation = (*SQLite)(nil)

const createDatasetTable = `CREATE TABLE IF NOT EXISTS dataset (
	id         INTEGER PRIMARY KEY CHECK (id = 1),
	generation TEXT NOT NULL
)`

// Generation returns the marker of the SQLite dataset, "" when none.
func (s *SQLite) Generation(ctx context.Context) (string, error) {
	var gen string
	err := s.db.QueryRowContext(ctx, `SELECT generation FROM dataset WHERE id = 1`).Scan(&gen)
	switch {
	case err == nil:
		return gen, nil
	case errors.Is(err, sql.ErrNoRows):
		return "", nil
	}
	// A database without the table (replaced by an empty file, or one
	// from before markers) has no marker.
	var n int
	if qerr := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'dataset'`).Scan(&n); qerr == nil && n == 0 {
		return "", nil
	}
	return "", fmt.Errorf("read dataset generation: %w", err)
}

// InitGeneration writes gen as the marker unless one exists.
func (s *SQLite) InitGeneration(ctx context.Context, gen string) (string, error) {
	if _, err := s.db.ExecContext(ctx, createDatasetTable); err != nil {
		return "", fmt.Errorf("init dataset generation: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO dataset (id, generation) VALUES (1, ?)`, gen); err != nil {
		return "", fmt.Errorf("init dataset generation: %w", err)
	}
	return s.Generation(ctx)
}
