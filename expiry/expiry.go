// Package expiry owns the janitor that removes expired files: a tombstone
// for each of their links first (so a late click says "expired on …" or
// "withdrawn on …", not "does not exist"), then their encrypted blobs,
// then their metadata and links, each removal audited as file.purged; and
// it removes tombstones older than the audit retention.
package expiry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

// Janitor purges expired files.
type Janitor struct {
	Store  store.Store
	Blobs  *vault.BlobStore
	Audit  audit.Recorder
	Now    func() time.Time
	Logger *slog.Logger
	// TombstoneTTL is how long a purged link's tombstone is kept: as long
	// as the audit log keeps the events about it. 0 = 90 days.
	TombstoneTTL time.Duration
}

// log is the janitor's logger, named for this package.
func (j *Janitor) log() *slog.Logger {
	l := j.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With("component", "expiry")
}

// DefaultTombstoneTTL matches the default audit retention.
const DefaultTombstoneTTL = 90 * 24 * time.Hour

const batchSize = 500

// Sweep removes every file expired at now and returns how many it removed.
func (j *Janitor) Sweep(ctx context.Context) (int, error) {
	now := time.Now()
	if j.Now != nil {
		now = j.Now()
	}
	removed := 0
	for {
		files, err := j.Store.ExpiredFiles(ctx, now, batchSize)
		if err != nil {
			return removed, fmt.Errorf("list expired files: %w", err)
		}
		keepUntil := now.Add(j.tombstoneTTL())
		for _, f := range files {
			// Tombstones before anything is removed: a crash after this
			// step leaves the file, which the next sweep buries again.
			if _, err := j.Store.BuryLinks(ctx, f.ID, keepUntil); errors.Is(err, store.ErrNotFound) {
				continue // another instance sharing the store purged it first
			} else if err != nil {
				return removed, fmt.Errorf("tombstones of file %s: %w", f.ID, err)
			}
			// Blob first: a crash in between leaves metadata that the
			// next sweep finds again, never a blob nobody knows about.
			if err := j.Blobs.Delete(f.ID); err != nil {
				return removed, fmt.Errorf("purge blob %s: %w", f.ID, err)
			}
			if err := j.Store.DeleteFile(ctx, f.ID); errors.Is(err, store.ErrNotFound) {
				// Another instance sharing the store purged it first.
				continue
			} else if err != nil {
				return removed, fmt.Errorf("purge file %s: %w", f.ID, err)
			}
			removed++
			if err := j.Audit.Record(ctx, audit.Event{Type: audit.TypeFilePurged, Actor: audit.ActorSystem,
				MessageID: f.MessageID, FileID: f.ID, FileName: f.Name, Size: f.Size, SHA256: f.SHA256,
				Expires: f.ExpiresAt, Reason: "expired"}); err != nil {
				return removed, fmt.Errorf("audit file.purged %s: %w", f.ID, err)
			}
		}
		if len(files) < batchSize {
			break
		}
	}
	if n, err := j.Store.PurgeTombstones(ctx, now); err != nil {
		return removed, fmt.Errorf("purge tombstones: %w", err)
	} else if n > 0 {
		j.log().Info("old link tombstones removed", "count", n)
	}
	return removed, nil
}

func (j *Janitor) tombstoneTTL() time.Duration {
	if j.TombstoneTTL > 0 {
		return j.TombstoneTTL
	}
	return DefaultTombstoneTTL
}

// Run sweeps at once and then every interval until ctx ends.
func (j *Janitor) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := j.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			j.log().Error("expiry sweep failed", "err", err, "removed", n)
		} else if n > 0 {
			j.log().Info("expired files purged", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
