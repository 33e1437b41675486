package vault

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// UseTempArea gives this instance its own temp directory,
// blobs/tmp/<name>, and empties it: whatever is there was left by this
// instance's previous run (a crash mid-upload), since no other instance
// writes there. Other instances sharing the blob directory keep theirs.
func (s *BlobStore) UseTempArea(name string) (int, error) {
	if !validBlobID.MatchString(name) {
		return 0, fmt.Errorf("blob temp area %q: invalid name", name)
	}
	dir := filepath.Join(s.dir, blobTmpDir, name)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("blob temp area %s: %w", dir, err)
	}
	removed := 0
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return removed, fmt.Errorf("blob temp area %s: %w", dir, err)
		}
		removed++
	}
	if err := os.MkdirAll(dir, PrivateDirMode); err != nil {
		return removed, fmt.Errorf("blob temp area %s: %w", dir, err)
	}
	s.tmpDir = dir
	return removed, nil
}

// Orphans walks the published blobs (temp areas aside) and passes the IDs
// of those not modified for olderThan to check, in batches; check returns
// the IDs no record owns, which are deleted. It returns the IDs deleted.
// olderThan is the grace period for a message in flight on another
// instance: its blob is published a moment before its record is written.
func (s *BlobStore) Orphans(olderThan time.Duration, check func(ids []string) ([]string, error)) ([]string, error) {
	const batch = 500
	cutoff := time.Now().Add(-olderThan)
	var ids, removed []string
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		orphans, err := check(ids)
		if err != nil {
			return err
		}
		for _, id := range orphans {
			if err := s.Delete(id); err != nil {
				return err
			}
			removed = append(removed, id)
		}
		ids = ids[:0]
		return nil
	}
	tmp := filepath.Join(s.dir, blobTmpDir)
	err := filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			if path == tmp {
				return filepath.SkipDir
			}
			return nil
		}
		id, ok := strings.CutSuffix(d.Name(), blobSuffix)
		if !ok || !d.Type().IsRegular() || !validBlobID.MatchString(id) {
			return nil
		}
		info, err := d.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			return nil
		}
		ids = append(ids, id)
		if len(ids) == batch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return removed, fmt.Errorf("reconcile blobs %s: %w", s.dir, err)
	}
	return removed, nil
}
