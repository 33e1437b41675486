package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/store"
)

// generationPath is where the dataset's generation marker is recorded
// outside the store: storage.dir, which instances sharing Redis share too
// (it holds the blobs).
func generationPath(c *config.Config) string { return c.Storage.Path("dataset-generation") }

func readGenerationFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return strings.TrimSpace(string(data)), nil
}

func writeGenerationFile(path, gen string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, werr := tmp.WriteString(gen + "\n")
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// datasetGeneration returns the generation this instance serves. A new
// dataset (no marker in the store, none recorded outside it) is given one
// in both places. A marker recorded outside but missing in the store, or a
// different one, is returned as it was recorded: the guard then finds the
// store is not that dataset and refuses.
func datasetGeneration(ctx context.Context, c *config.Config, st store.Store, log *slog.Logger) (string, error) {
	g, ok := st.(store.Generation)
	if !ok {
		return "", fmt.Errorf("store %T has no generation marker", st)
	}
	path := generationPath(c)
	recorded, err := readGenerationFile(path)
	if err != nil {
		return "", err
	}
	current, err := g.Generation(ctx)
	if err != nil {
		return "", err
	}
	switch {
	case recorded != "":
		return recorded, nil
	case current == "":
		current, err = g.InitGeneration(ctx, uuid.NewString())
		if err != nil {
			return "", err
		}
		log.Info("dataset initialised", "generation", current)
	}
	if err := writeGenerationFile(path, current); err != nil {
		return "", err
	}
	return current, nil
}

// guardedAudit refuses audit writes while the store guard refuses, and
// turns an audit log that ends before its head (events lost) into the
// guard's lost state.
type guardedAudit struct {
	audit.Log
	guard *store.Guard
}

func (a guardedAudit) observe(ctx context.Context, err error) error {
	if errors.Is(err, audit.ErrBehindHead) {
		a.guard.MarkLost(err.Error())
		return fmt.Errorf("%w: %w", store.ErrDatasetLost, err)
	}
	return a.guard.Observe(ctx, err)
}

func (a guardedAudit) Record(ctx context.Context, e audit.Event) error {
	if err := a.guard.Check(); err != nil {
		return err
	}
	return a.observe(ctx, a.Log.Record(ctx, e))
}

func (a guardedAudit) RecordAll(ctx context.Context, events []audit.Event) error {
	if err := a.guard.Check(); err != nil {
		return err
	}
	return a.observe(ctx, a.Log.RecordAll(ctx, events))
}

// The SQLite log's group commit reaches through the guard: RecordWith
// (a message's records and events in one transaction), Append (events
// nobody waits for) and Flush (at shutdown). Without them the pipeline
// would pay separate commits for the store and the log.

func (a guardedAudit) RecordWith(ctx context.Context, events []audit.Event, extra audit.TxFunc) error {
	if err := a.guard.Check(); err != nil {
		return err
	}
	rw, ok := a.Log.(interface {
		RecordWith(context.Context, []audit.Event, audit.TxFunc) error
	})
	if !ok {
		return errors.New("audit log cannot share a transaction")
	}
	return a.observe(ctx, rw.RecordWith(ctx, events, extra))
}

func (a guardedAudit) Append(events []audit.Event, then func(error)) {
	ap, ok := a.Log.(interface {
		Append([]audit.Event, func(error))
	})
	if err := a.guard.Check(); err != nil || !ok {
		if err == nil {
			err = a.RecordAll(context.Background(), events)
		}
		if then != nil {
			then(err)
		}
		return
	}
	ap.Append(events, func(err error) {
		err = a.observe(context.Background(), err)
		if then != nil {
			then(err)
		}
	})
}

func (a guardedAudit) Flush(ctx context.Context) error {
	if f, ok := a.Log.(interface{ Flush(context.Context) error }); ok {
		return f.Flush(ctx)
	}
	return nil
}

// DB is the log's database when it is SQLite (nil otherwise).
func (a guardedAudit) DB() *sql.DB {
	if d, ok := a.Log.(interface{ DB() *sql.DB }); ok {
		return d.DB()
	}
	return nil
}

func (a guardedAudit) Purge(ctx context.Context) (int64, error) {
	if err := a.guard.Check(); err != nil {
		return 0, err
	}
	n, err := a.Log.Purge(ctx)
	return n, a.observe(ctx, err)
}

// orphanGrace is how old a blob without a record must be before it is
// removed: a message in flight on another instance publishes its blobs a
// moment before its record, and no message takes an hour.
const orphanGrace = time.Hour

// reconcileBlobs removes blobs no file record owns (left by a crash
// between publishing a blob and writing its record). It does nothing while
// the store guard refuses: in a lost dataset every blob looks orphaned,
// and those are purged only by `attachgate recover`.
func reconcileBlobs(ctx context.Context, b *backend, log *slog.Logger) {
	idx, ok := b.raw.(store.FileIndex)
	if !ok || b.guard.Refusing() {
		return
	}
	removed, err := b.blobs.Orphans(orphanGrace, func(ids []string) ([]string, error) {
		if err := b.guard.Check(); err != nil {
			return nil, err
		}
		known, err := idx.KnownFiles(ctx, ids)
		if err != nil {
			return nil, err
		}
		var orphans []string
		for _, id := range ids {
			if !known[id] {
				orphans = append(orphans, id)
			}
		}
		return orphans, nil
	})
	if len(removed) > 0 {
		log.Warn("removed blobs no file record owns (left by a crash)", "count", len(removed))
	}
	if err != nil && !errors.Is(err, store.ErrUnavailable) {
		log.Error("reconcile blobs with the store", "err", err)
	}
}

// runReconcile reconciles at once and then every interval until ctx ends.
func runReconcile(ctx context.Context, b *backend, log *slog.Logger, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		reconcileBlobs(ctx, b, log)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// instanceName names this instance's blob temp area: its host and its
// spool directory, which is never shared, so a restart finds its own area.
func instanceName(c *config.Config) string {
	host, _ := os.Hostname()
	spool, err := filepath.Abs(c.Storage.SpoolDir)
	if err != nil {
		spool = c.Storage.SpoolDir
	}
	sum := sha256.Sum256([]byte(host + "\x00" + spool))
	return "i-" + hex.EncodeToString(sum[:8])
}
