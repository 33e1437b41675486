package vault

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

func TestBlobRoundTrip(t *testing.T) {
	s, ring, _ := newTestStore(t)
	sizes := []int{0, 1, ageChunkSize - 1, ageChunkSize, ageChunkSize + 1, 5<<20 + 123}
	for i, size := range sizes {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := randomBytes(size, uint64(i))
			id := fmt.Sprintf("blob-%d", i)
			info := putBytes(t, s, id, data)
			sum := sha256.Sum256(data)
			want := BlobInfo{ID: id, KeyID: ring.CurrentID(), Size: int64(size), SHA256: hex.EncodeToString(sum[:])}
			if info != want {
				t.Errorf("Put = %+v, want %+v", info, want)
			}
			b, err := s.Open(id, info.KeyID)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if b.Size() != int64(size) {
				t.Errorf("Size = %d, want %d", b.Size(), size)
			}
			// iotest.TestReader checks Read, ReadAt and Seek against the data.
			if err := iotest.TestReader(b, data); err != nil {
				t.Error(err)
			}
			if got := readBlob(t, s, id, info.KeyID); !bytes.Equal(got, data) {
				t.Error("plaintext differs after round trip")
			}
		})
	}
}

// TestBlobReadAt reads at and across age's 64 KiB chunk boundaries.
func TestBlobReadAt(t *testing.T) {
	s, _, _ := newTestStore(t)
	const size = 3*ageChunkSize + 100
	data := randomBytes(size, 7)
	info := putBytes(t, s, "ranges", data)
	b, err := s.Open("ranges", info.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tests := []struct {
		off     int64
		n       int
		wantN   int
		wantEOF bool
	}{
		{0, 10, 10, false},
		{ageChunkSize - 1, 1, 1, false},
		{ageChunkSize - 1, 2, 2, false}, // spans two chunks
		{ageChunkSize, 1, 1, false},
		{ageChunkSize + 1, ageChunkSize, ageChunkSize, false},
		{2*ageChunkSize - 1, ageChunkSize + 2, ageChunkSize + 2, false},
		{size - 1, 1, 1, false}, // last byte; io.EOF allowed, not required
		{size - 50, 100, 50, true},
		{0, size, size, false},
		{size, 1, 0, true},
	}
	for _, tt := range tests {
		p := make([]byte, tt.n)
		n, err := b.ReadAt(p, tt.off)
		atEnd := tt.off+int64(n) == size
		if n != tt.wantN || (tt.wantEOF && err != io.EOF) || (err != nil && !(err == io.EOF && atEnd)) {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want %d, EOF=%v", tt.n, tt.off, n, err, tt.wantN, tt.wantEOF)
			continue
		}
		if !bytes.Equal(p[:n], data[tt.off:tt.off+int64(n)]) {
			t.Errorf("ReadAt(%d bytes at %d): wrong bytes", tt.n, tt.off)
		}
	}
	// Seek + Read across a boundary, with small reads served from the chunk.
	if _, err := b.Seek(ageChunkSize-3, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 7)
	if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, data[ageChunkSize-3:ageChunkSize+4]) {
		t.Errorf("Seek+Read across boundary = %x, %v", got, err)
	}
}

// TestBlobServeContent is how the link server streams a download: Range
// requests through http.ServeContent.
func TestBlobServeContent(t *testing.T) {
	s, _, _ := newTestStore(t)
	data := randomBytes(2*ageChunkSize+10, 3)
	info := putBytes(t, s, "served", data)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := s.Open("served", info.KeyID)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer b.Close()
		http.ServeContent(w, r, "f.bin", time.Time{}, b)
	}))
	defer srv.Close()
	tests := []struct {
		rangeHeader string
		from, to    int // inclusive
	}{
		{fmt.Sprintf("bytes=%d-%d", ageChunkSize-1, ageChunkSize), ageChunkSize - 1, ageChunkSize},
		{"bytes=-1", len(data) - 1, len(data) - 1},
		{fmt.Sprintf("bytes=%d-", ageChunkSize+1), ageChunkSize + 1, len(data) - 1},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		req.Header.Set("Range", tt.rangeHeader)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[tt.from:tt.to+1]) {
			t.Errorf("Range %s: status %d, %d bytes; want 206 with bytes %d-%d", tt.rangeHeader, resp.StatusCode, len(body), tt.from, tt.to)
		}
	}
}

// TestBlobTamper flips one byte at various places of the stored file:
// either Open or reading the whole plaintext must fail.
func TestBlobTamper(t *testing.T) {
	s, _, _ := newTestStore(t)
	data := randomBytes(3*ageChunkSize+100, 11)
	info := putBytes(t, s, "orig", data)
	stored, err := os.ReadFile(s.path("orig"))
	if err != nil {
		t.Fatal(err)
	}
	header := bytes.Index(stored, []byte("\n---")) // end of the age header
	tests := []struct {
		name string
		pos  int
	}{
		{"header stanza", bytes.Index(stored, []byte("X25519")) + 10},
		{"header MAC", header + 6},
		{"payload nonce", bytes.IndexByte(stored[header+1:], '\n') + header + 3},
		{"first chunk", len(stored) - 3*(ageChunkSize+16) - 50},
		{"middle chunk", len(stored) - 2*(ageChunkSize+16) + 5},
		{"final chunk tag", len(stored) - 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("tampered-%d", i)
			bad := bytes.Clone(stored)
			bad[tt.pos] ^= 0x01
			if err := os.MkdirAll(filepath.Dir(s.path(id)), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.path(id), bad, 0o600); err != nil {
				t.Fatal(err)
			}
			b, err := s.Open(id, info.KeyID)
			if err != nil {
				return // detected at open
			}
			defer b.Close()
			if _, err := io.ReadAll(b); err == nil {
				t.Errorf("byte %d flipped: Open and ReadAll both succeeded", tt.pos)
			}
		})
	}
	t.Run("truncated by a chunk", func(t *testing.T) {
		if err := os.WriteFile(s.path("orig"), stored[:len(stored)-100-16], 0o600); err != nil {
			t.Fatal(err)
		}
		if b, err := s.Open("orig", info.KeyID); err == nil {
			b.Close()
			t.Error("Open of a truncated blob succeeded")
		}
	})
}

// TestNoPlaintextOnDisk searches every file the vault wrote for a marker
// that fills the plaintext.
func TestNoPlaintextOnDisk(t *testing.T) {
	s, _, dir := newTestStore(t)
	marker := []byte("ATTACHGATE-PLAINTEXT-MARKER")
	data := bytes.Repeat(marker, 200_000/len(marker))
	putBytes(t, s, "secret", data)
	sp, err := NewSpool(filepath.Join(dir, "spool"))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Remove()
	sp.Write(data)
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	checkNoMarker(t, dir, marker, 2)
}

// checkNoMarker fails if a file under dir contains marker; it expects at
// least wantFiles non-key files to have been checked.
func checkNoMarker(t *testing.T, dir string, marker []byte, wantFiles int) {
	t.Helper()
	checked := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, marker) || bytes.Contains(b, marker[:8]) {
			t.Errorf("%s contains plaintext", path)
		}
		if !strings.Contains(path, "/keys/") {
			checked++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < wantFiles {
		t.Errorf("checked %d data files, want at least %d", checked, wantFiles)
	}
}

func TestBlobKeyRotation(t *testing.T) {
	s, ring, dir := newTestStore(t)
	oldData, newData := randomBytes(100_000, 1), randomBytes(100_000, 2)
	oldInfo := putBytes(t, s, "old", oldData)
	newKey, err := ring.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if newKey == oldInfo.KeyID || ring.CurrentID() != newKey {
		t.Fatalf("Rotate = %s, CurrentID = %s, old key %s", newKey, ring.CurrentID(), oldInfo.KeyID)
	}
	newInfo := putBytes(t, s, "new", newData)
	if newInfo.KeyID != newKey {
		t.Errorf("blob after rotation has key %s, want %s", newInfo.KeyID, newKey)
	}
	if _, err := s.Open("old", newKey); err == nil {
		t.Error("old blob opened with the new key")
	}

	// A fresh process sees the rotation and still opens both.
	ring2, err := OpenKeyRing(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if ring2.CurrentID() != newKey || len(ring2.IDs()) != 2 {
		t.Errorf("reopened ring: current %s, keys %v; want %s and two keys", ring2.CurrentID(), ring2.IDs(), newKey)
	}
	s2, err := NewBlobStore(filepath.Join(dir, "blobs"), ring2)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id, keyID string
		want      []byte
	}{
		{"old", oldInfo.KeyID, oldData},
		{"new", newKey, newData},
		{"old", "", oldData}, // unknown key: try all
	}
	for _, tt := range tests {
		if got := readBlob(t, s2, tt.id, tt.keyID); !bytes.Equal(got, tt.want) {
			t.Errorf("blob %s with key %q: plaintext differs", tt.id, tt.keyID)
		}
	}
}

func TestBlobDelete(t *testing.T) {
	s, _, _ := newTestStore(t)
	info := putBytes(t, s, "gone", []byte("x"))
	if err := s.Delete("gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open("gone", info.KeyID); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open after Delete: %v, want fs.ErrNotExist", err)
	}
	if err := s.Delete("gone"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

func TestBlobInvalidID(t *testing.T) {
	s, ring, _ := newTestStore(t)
	for _, id := range []string{"", "../escape", "a/b", ".hidden", "x y"} {
		if _, err := s.Put(id, strings.NewReader("x")); err == nil {
			t.Errorf("Put(%q) succeeded", id)
		}
		if _, err := s.Open(id, ring.CurrentID()); err == nil {
			t.Errorf("Open(%q) succeeded", id)
		}
		if err := s.Delete(id); err == nil {
			t.Errorf("Delete(%q) succeeded", id)
		}
	}
}

func TestBlobTempFiles(t *testing.T) {
	s, _, _ := newTestStore(t)
	// A failing reader leaves neither a blob nor a temp file.
	failing := io.MultiReader(bytes.NewReader(randomBytes(300_000, 5)), iotest.ErrReader(errors.New("client went away")))
	if _, err := s.Put("failed", failing); err == nil {
		t.Fatal("Put from a failing reader succeeded")
	}
	if _, err := os.Stat(s.path("failed")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("blob of failed Put exists: %v", err)
	}
	if left := listDir(t, s.tmpDir); len(left) != 0 {
		t.Errorf("temp files after failed Put: %v", left)
	}

	// CleanTemp removes stale temp files only.
	stale, fresh := filepath.Join(s.tmpDir, "a.1.tmp"), filepath.Join(s.tmpDir, "b.2.tmp")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	n, err := s.CleanTemp(time.Hour)
	if err != nil || n != 1 {
		t.Errorf("CleanTemp = %d, %v; want 1", n, err)
	}
	if left := listDir(t, s.tmpDir); len(left) != 1 || left[0] != "b.2.tmp" {
		t.Errorf("after CleanTemp: %v, want [b.2.tmp]", left)
	}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestBlobConcurrentPut(t *testing.T) {
	s, _, _ := newTestStore(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.Put(fmt.Sprintf("c%d", i), bytes.NewReader(randomBytes(200_000+i, uint64(100+i))))
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Put %d: %v", i, errs[i])
		}
		if got := readBlob(t, s, fmt.Sprintf("c%d", i), ""); !bytes.Equal(got, randomBytes(200_000+i, uint64(100+i))) {
			t.Errorf("blob %d differs", i)
		}
	}
	// Concurrent ReadAt on one Blob is allowed.
	b, err := s.Open("c0", "")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	want := randomBytes(200_000, 100)
	for i := range n {
		wg.Go(func() {
			p := make([]byte, 1000)
			off := int64(i * 20_000)
			if _, err := b.ReadAt(p, off); err != nil || !bytes.Equal(p, want[off:off+1000]) {
				t.Errorf("concurrent ReadAt at %d: %v", off, err)
			}
		})
	}
	wg.Wait()
}

func TestBlobFileModes(t *testing.T) {
	s, _, _ := newTestStore(t)
	putBytes(t, s, "mode", []byte("x"))
	fi, err := os.Stat(s.path("mode"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("blob mode %04o, want 0600", perm)
	}
	for _, d := range []string{s.dir, filepath.Dir(s.path("mode"))} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("dir %s mode %v, %v; want 0700", d, fi.Mode().Perm(), err)
		}
	}
}
