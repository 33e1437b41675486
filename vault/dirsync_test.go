package vault

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/attachgate/attachgate/testsupport"
)

// TestTimeLayout: blobs with time-ordered IDs are written into the
// directory of their creation time; blobs stored under the hash layout by
// earlier versions are still read and deleted.
func TestTimeLayout(t *testing.T) {
	s, _, dir := newTestStore(t)
	a, b := uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()
	data := randomBytes(1000, 3)
	info := putBytes(t, s, a, data)
	got, err := filepath.Glob(filepath.Join(dir, "blobs", "t", "*", "*", a+".age"))
	if err != nil || len(got) != 1 {
		t.Fatalf("blob %s not in the time layout: %v %v", a, got, err)
	}
	if !bytes.Equal(readBlob(t, s, a, info.KeyID), data) {
		t.Fatal("time-layout blob reads back wrong")
	}

	// An older version put b at its hash path.
	info = putBytes(t, s, b, data)
	if err := os.MkdirAll(filepath.Dir(s.hashPath(b)), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(s.path(b), s.hashPath(b)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readBlob(t, s, b, info.KeyID), data) {
		t.Fatal("hash-layout blob reads back wrong")
	}
	for _, id := range []string{a, b} {
		if err := s.Delete(id); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Open(id, ""); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("open %s after delete: %v, want not exist", id, err)
		}
	}
}

// TestDirSyncShared: Puts waiting for their directory sync at the same
// moment share one sync of that directory.
func TestDirSyncShared(t *testing.T) {
	s, _, _ := newTestStore(t)
	// Another Put's sync is under way: the next ones queue.
	s.dirs.mu.Lock()
	s.dirs.leading = true
	s.dirs.mu.Unlock()

	const puts = 8
	ids := make([]string, puts)
	errs := make([]error, puts)
	var wg sync.WaitGroup
	for i := range puts {
		ids[i] = uuid.Must(uuid.NewV7()).String()
		wg.Go(func() {
			_, errs[i] = s.Put(ids[i], bytes.NewReader([]byte(fmt.Sprint("blob ", i))))
		})
	}
	dirs := map[string]bool{}
	for _, id := range ids {
		dirs[filepath.Dir(s.path(id))] = true
	}
	testsupport.WaitFor(t, "every Put to wait for its directory sync", func() bool {
		s.dirs.mu.Lock()
		defer s.dirs.mu.Unlock()
		return len(s.dirs.queue) == puts
	})
	// The running sync ends and hands over.
	s.dirs.mu.Lock()
	close(s.dirs.queue[0].lead)
	s.dirs.mu.Unlock()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if s.dirs.syncs != len(dirs) {
		t.Errorf("%d directory syncs for %d Puts into %d directories, want %d", s.dirs.syncs, puts, len(dirs), len(dirs))
	}
}

// TestSyncPending: blobs put without their directory sync become durable
// together, one sync per directory, and a second pass has nothing to do.
func TestSyncPending(t *testing.T) {
	s, _, _ := newTestStore(t)
	dirs := map[string]bool{}
	for i := range 6 {
		id := uuid.Must(uuid.NewV7()).String()
		if _, err := s.PutUnsynced(id, bytes.NewReader([]byte(fmt.Sprint("blob ", i)))); err != nil {
			t.Fatal(err)
		}
		dirs[filepath.Dir(s.path(id))] = true
		if _, err := os.Stat(s.path(id)); err != nil {
			t.Fatalf("blob %s not in place before the sync: %v", id, err)
		}
	}
	if err := s.SyncPending(); err != nil {
		t.Fatal(err)
	}
	if s.dirs.syncs != len(dirs) {
		t.Errorf("%d directory syncs for 6 blobs in %d directories", s.dirs.syncs, len(dirs))
	}
	if err := s.SyncPending(); err != nil {
		t.Fatal(err)
	}
	if s.dirs.syncs != len(dirs) {
		t.Errorf("a second pass synced again (%d syncs)", s.dirs.syncs)
	}
}
