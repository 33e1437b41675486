// Package expiry owns the janitor that removes expired files: their
// encrypted blobs first, then their metadata and links, each removal
// audited as file.purged.
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
}

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
		for _, f := range files {
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
			if err := j.Audit.Record(ctx, audit.Event{Type: "file.purged", Actor: "system",
				MessageID: f.MessageID, FileID: f.ID, FileName: f.Name, Size: f.Size, SHA256: f.SHA256,
				Expires: f.ExpiresAt, Reason: "expired"}); err != nil {
				return removed, fmt.Errorf("audit file.purged %s: %w", f.ID, err)
			}
		}
		if len(files) < batchSize {
			return removed, nil
		}
	}
}

// Run sweeps at once and then every interval until ctx ends.
func (j *Janitor) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := j.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			j.Logger.Error("expiry sweep failed", "err", err, "removed", n)
		} else if n > 0 {
			j.Logger.Info("expired files purged", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
