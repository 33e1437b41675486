package vault

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

// newTestStore returns a blob store and its key ring in a fresh directory.
func newTestStore(t testing.TB) (*BlobStore, *KeyRing, string) {
	t.Helper()
	dir := t.TempDir()
	ring, err := OpenKeyRing(dir + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewBlobStore(dir+"/blobs", ring)
	if err != nil {
		t.Fatal(err)
	}
	return s, ring, dir
}

func putBytes(t testing.TB, s *BlobStore, id string, data []byte) BlobInfo {
	t.Helper()
	info, err := s.Put(id, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Put(%s): %v", id, err)
	}
	return info
}

func readBlob(t testing.TB, s *BlobStore, id, keyID string) []byte {
	t.Helper()
	b, err := s.Open(id, keyID)
	if err != nil {
		t.Fatalf("Open(%s, %s): %v", id, keyID, err)
	}
	defer b.Close()
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	return got
}
