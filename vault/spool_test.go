package vault

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

func TestSpool(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	sp, err := NewSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Remove()
	data := randomBytes(3*ageChunkSize+777, 42)
	// Write in odd pieces, as SMTP DATA arrives.
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1000+len(rest)%5000)
		if _, err := sp.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if _, err := sp.Open(); err == nil {
		t.Error("Open before Close succeeded")
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if sp.Size() != int64(len(data)) {
		t.Errorf("Size = %d, want %d", sp.Size(), len(data))
	}
	if _, err := sp.Write([]byte("late")); err == nil {
		t.Error("Write after Close succeeded")
	}
	// Two passes (walk, then rewrite) read the same bytes.
	for pass := 1; pass <= 2; pass++ {
		r, err := sp.Open()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("pass %d: %d bytes, %v; want the input", pass, len(got), err)
		}
	}
	ra, err := sp.OpenReaderAt()
	if err != nil {
		t.Fatal(err)
	}
	if err := iotest.TestReader(ra, data); err != nil {
		t.Error(err)
	}
	ra.Close()

	fi, err := os.Stat(sp.path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("spool file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("spool dir mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}

	if err := sp.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := sp.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if _, err := os.Stat(sp.path); !os.IsNotExist(err) {
		t.Errorf("spool file after Remove: %v", err)
	}
	if _, err := sp.Open(); err == nil {
		t.Error("Open after Remove succeeded")
	}
}

func TestSpoolEmptyAndRemoveWhileWriting(t *testing.T) {
	dir := t.TempDir()
	empty, err := NewSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	empty.Close()
	r, err := empty.Open()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(r); err != nil || len(got) != 0 {
		t.Errorf("empty spool: %q, %v", got, err)
	}
	r.Close()
	empty.Remove()

	// An aborted transaction removes its spool without closing it.
	aborted, err := NewSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	aborted.Write([]byte("half a message"))
	if err := aborted.Remove(); err != nil {
		t.Fatal(err)
	}
	if left := listDir(t, dir); len(left) != 0 {
		t.Errorf("files left: %v", left)
	}
}

func TestSpoolNoPlaintextOnDisk(t *testing.T) {
	dir := t.TempDir()
	sp, err := NewSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Remove()
	marker := []byte("Subject: ATTACHGATE-SPOOL-MARKER")
	sp.Write(bytes.Repeat(marker, 10_000))
	sp.Close()
	checkNoMarker(t, dir, marker, 1)
}

func TestCleanSpool(t *testing.T) {
	dir := t.TempDir()
	// Leftovers of a crashed run: spools never removed.
	for range 3 {
		sp, err := NewSpool(dir)
		if err != nil {
			t.Fatal(err)
		}
		sp.Write([]byte("lost"))
		sp.Close()
	}
	if err := os.WriteFile(filepath.Join(dir, "not-a-spool.txt"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := CleanSpool(dir)
	if err != nil || n != 3 {
		t.Errorf("CleanSpool = %d, %v; want 3", n, err)
	}
	if left := strings.Join(listDir(t, dir), ","); left != "not-a-spool.txt" {
		t.Errorf("left: %s", left)
	}
	if n, err := CleanSpool(filepath.Join(dir, "missing")); n != 0 || err != nil {
		t.Errorf("CleanSpool(missing dir) = %d, %v", n, err)
	}
}
