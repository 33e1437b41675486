package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/vault"
)

// blobFiles lists the published blobs under storage.dir/blobs by ID.
func blobFiles(t *testing.T, blobs string) map[string]string {
	t.Helper()
	found := map[string]string{}
	filepath.WalkDir(blobs, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(blobs, p)
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".age") && !strings.HasPrefix(rel, "tmp"+string(filepath.Separator)) {
			found[strings.TrimSuffix(d.Name(), ".age")] = p
		}
		return nil
	})
	return found
}

// Issue 9 item 13 and issue 15 part 4: a crash between publishing a blob
// and writing its record left an encrypted blob nothing owns and nothing
// purges, and a crashed instance's unfinished blob stayed in blobs/tmp.
// At start the gateway clears its own temp area and removes blobs no
// record owns once they are older than the grace period; blobs of records,
// and young blobs (a message in flight on another instance), stay.
func TestOrphanBlobsAndTempAreaClearedAtStart(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, "")
	if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("kept.pdf", []byte("owned by a record"))); err != nil {
		t.Fatalf("send: %v", err)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(d.dir, "data")
	blobsDir := filepath.Join(storage, "blobs")
	owned := blobFiles(t, blobsDir)
	if len(owned) != 1 {
		t.Fatalf("%d blobs after one message", len(owned))
	}

	// What kill -9 mid-message leaves: published blobs without records,
	// and an unfinished temp file in this instance's temp area.
	ring, err := vault.OpenKeyRing(filepath.Join(storage, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	bs, err := vault.NewBlobStore(blobsDir, ring)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"orphan-old", "orphan-young"} {
		if _, err := bs.Put(id, bytes.NewReader([]byte(id))); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * time.Hour)
	for id, p := range blobFiles(t, blobsDir) {
		if id != "orphan-young" {
			os.Chtimes(p, past, past)
		}
	}
	areas, _ := filepath.Glob(filepath.Join(blobsDir, "tmp", "i-*"))
	if len(areas) != 1 {
		t.Fatalf("instance temp areas: %v", areas)
	}
	leftover := filepath.Join(areas[0], "crashed.0123.tmp")
	if err := os.WriteFile(leftover, []byte("half a blob"), 0o600); err != nil {
		t.Fatal(err)
	}

	d.log = &lockedBuffer{}
	d.start()
	deadline := time.Now().Add(60 * time.Second)
	for {
		left := blobFiles(t, blobsDir)
		if _, ok := left["orphan-old"]; !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old orphan still there: %v\n%s", left, d.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	left := blobFiles(t, blobsDir)
	for id := range owned {
		if _, ok := left[id]; !ok {
			t.Errorf("blob %s of a record was removed", id)
		}
	}
	if _, ok := left["orphan-young"]; !ok {
		t.Error("young orphan removed inside the grace period (it may be a message in flight on another instance)")
	}
	if _, err := os.Stat(leftover); err == nil {
		t.Error("this instance's unfinished temp file survived its restart")
	}
}
