package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/store/storetest"
)

func openSQLite(t *testing.T) *store.SQLite {
	t.Helper()
	s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "attachgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openSQLite(t) })
}

// TestSQLiteTwoHandles: the CLI opens the database while the daemon has it
// open; both migrate safely and see each other's writes.
func TestSQLiteTwoHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "attachgate.db")
	daemon, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer daemon.Close()
	cli, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	ctx := context.Background()
	now := time.Now().UTC()
	m := store.Message{ID: store.NewID(), CreatedAt: now}
	f := store.File{ID: store.NewID(), MessageID: m.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	_, hash, err := store.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	l := store.Link{ID: store.NewID(), FileID: f.ID, TokenHash: hash, CreatedAt: now, ExpiresAt: now.Add(time.Hour), MaxDownloads: 1}
	if err := daemon.CreateMessage(ctx, m, []store.File{f}, []store.Link{l}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.CountDownload(ctx, l.ID, now); err != nil {
		t.Fatalf("CountDownload from second handle: %v", err)
	}
	v, err := daemon.LinkByTokenHash(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	if v.Link.Downloads != 1 {
		t.Errorf("Downloads seen by first handle = %d, want 1", v.Link.Downloads)
	}
	var mode string
	if err := cli.DB().QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestSQLiteRejectsNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "attachgate.db")
	s, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().Exec(`UPDATE schema_version SET version = 99 WHERE component = 'store'`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := store.OpenSQLite(path); err == nil {
		s.Close()
		t.Fatal("OpenSQLite accepted a schema from a newer binary")
	}
}
