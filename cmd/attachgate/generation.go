package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

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

func (a guardedAudit) Purge(ctx context.Context) (int64, error) {
	if err := a.guard.Check(); err != nil {
		return 0, err
	}
	n, err := a.Log.Purge(ctx)
	return n, a.observe(ctx, err)
}
