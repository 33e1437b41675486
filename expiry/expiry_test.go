package expiry

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

func TestSweepPurgesExpiredFilesOnly(t *testing.T) {
	dir := t.TempDir()
	ring, err := vault.OpenKeyRing(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := vault.NewBlobStore(filepath.Join(dir, "blobs"), ring)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(filepath.Join(dir, "attachgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	al, err := audit.NewSQLite(st.DB(), audit.Options{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

	hashes := map[string][]byte{}
	put := func(name string, expires time.Time) store.File {
		id := store.NewID()
		info, err := blobs.Put(id, strings.NewReader("content of "+name))
		if err != nil {
			t.Fatal(err)
		}
		_, hash, _ := store.NewToken()
		hashes[name] = hash
		f := store.File{ID: id, MessageID: store.NewID(), Name: name, Size: info.Size, SHA256: info.SHA256,
			KeyID: info.KeyID, CreatedAt: now.Add(-time.Hour), ExpiresAt: expires}
		m := store.Message{ID: f.MessageID, Sender: "a@example.com", Recipients: []string{"b@example.net"}, CreatedAt: f.CreatedAt}
		l := store.Link{ID: store.NewID(), FileID: id, TokenHash: hash, CreatedAt: f.CreatedAt, ExpiresAt: expires}
		if err := st.CreateMessage(ctx, m, []store.File{f}, []store.Link{l}); err != nil {
			t.Fatal(err)
		}
		return f
	}
	old := put("old.pdf", now.Add(-time.Second))
	fresh := put("fresh.pdf", now.Add(time.Second))

	j := &Janitor{Store: st, Blobs: blobs, Audit: al, Now: func() time.Time { return now },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	n, err := j.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 file purged", n, err)
	}
	if _, err := blobs.Open(old.ID, old.KeyID); err == nil {
		t.Error("expired blob still on disk")
	}
	if b, err := blobs.Open(fresh.ID, fresh.KeyID); err != nil {
		t.Errorf("unexpired blob gone: %v", err)
	} else {
		b.Close()
	}
	if files, _ := st.ExpiredFiles(ctx, now.Add(time.Hour), 0); len(files) != 1 || files[0].ID != fresh.ID {
		t.Errorf("metadata left: %v", files)
	}
	// The purged link left a tombstone (state and date only); the live one
	// has none.
	tomb, err := st.TombstoneByTokenHash(ctx, hashes["old.pdf"], now)
	if err != nil || tomb.State != store.TombstoneExpired || !tomb.At.Equal(old.ExpiresAt) ||
		!tomb.KeepUntil.Equal(now.Add(DefaultTombstoneTTL)) {
		t.Errorf("tombstone of the purged link = %+v, %v; want expired at %v, kept %v", tomb, err, old.ExpiresAt, DefaultTombstoneTTL)
	}
	if _, err := st.TombstoneByTokenHash(ctx, hashes["fresh.pdf"], now); err == nil {
		t.Error("a live link has a tombstone")
	}
	// A second sweep (say, another instance's) finds nothing to do.
	if n, err := j.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("second Sweep = %d, %v", n, err)
	}
	var buf bytes.Buffer
	q, _ := audit.ParseDateRange("2026-11-25", "2026-11-25", time.UTC)
	// The purge event is stamped with the real clock, so export today too.
	q.To = time.Now().Add(24 * time.Hour)
	if err := al.Export(ctx, q, &buf, "jsonl", false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"type":"file.purged"`) || !strings.Contains(buf.String(), "old.pdf") {
		t.Fatalf("no file.purged event naming old.pdf:\n%s", buf.String())
	}
}
