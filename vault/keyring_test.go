package vault

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestKeyRingFirstStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	ring, err := OpenKeyRing(dir)
	if err != nil {
		t.Fatal(err)
	}
	keyID := ring.CurrentID()
	if !validKeyID.MatchString(keyID) || !strings.HasPrefix(keyID, "k") {
		t.Errorf("CurrentID = %q", keyID)
	}
	if len(ring.MACKey()) != macKeySize {
		t.Errorf("MACKey is %d bytes", len(ring.MACKey()))
	}
	key, err := os.ReadFile(filepath.Join(dir, keyID+keyFileSuffix))
	if err != nil || !bytes.HasPrefix(key, []byte("AGE-SECRET-KEY-1")) {
		t.Errorf("key file: %q, %v", key, err)
	}
	tests := []struct {
		name string
		perm os.FileMode
	}{
		{"", 0o700},
		{keyID + keyFileSuffix, 0o600},
		{macKeyFile, 0o600},
		{currentFile, 0o600},
	}
	for _, tt := range tests {
		fi, err := os.Stat(filepath.Join(dir, tt.name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != tt.perm {
			t.Errorf("%s: mode %04o, want %04o", filepath.Join(dir, tt.name), got, tt.perm)
		}
	}
	// Reopening finds the same key and MAC secret.
	again, err := OpenKeyRing(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.CurrentID() != keyID || !bytes.Equal(again.MACKey(), ring.MACKey()) {
		t.Error("reopened ring differs")
	}
	// MACKey returns a copy: callers cannot change the ring's secret.
	mac := ring.MACKey()
	mac[0] ^= 0xff
	if bytes.Equal(mac, ring.MACKey()) {
		t.Error("MACKey returned the ring's own slice")
	}
}

func TestKeyRingRefusesLooseModes(t *testing.T) {
	tests := []struct {
		name string
		file func(ring *KeyRing) string
		perm os.FileMode
	}{
		{"key readable by others", func(r *KeyRing) string { return r.CurrentID() + keyFileSuffix }, 0o644},
		{"key readable by group", func(r *KeyRing) string { return r.CurrentID() + keyFileSuffix }, 0o640},
		{"MAC key readable by group", func(*KeyRing) string { return macKeyFile }, 0o640},
		{"directory writable by group", func(*KeyRing) string { return "" }, 0o770},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "keys")
			ring, err := OpenKeyRing(dir)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, tt.file(ring))
			if err := os.Chmod(path, tt.perm); err != nil {
				t.Fatal(err)
			}
			_, err = OpenKeyRing(dir)
			if err == nil {
				t.Fatalf("OpenKeyRing accepted %s with mode %04o", path, tt.perm)
			}
			// The message names the file and its mode so the admin can fix it.
			if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, fmt.Sprintf("%04o", tt.perm)) {
				t.Errorf("error %q does not name %s and mode %04o", msg, path, tt.perm)
			}
		})
	}
}

// TestKeyRingConcurrentFirstStart: instances starting together on a shared,
// empty directory agree on one current key and one MAC secret.
func TestKeyRingConcurrentFirstStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	const n = 8
	rings := make([]*KeyRing, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			rings[i], errs[i] = OpenKeyRing(dir)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("OpenKeyRing %d: %v", i, errs[i])
		}
		if rings[i].CurrentID() != rings[0].CurrentID() || !bytes.Equal(rings[i].MACKey(), rings[0].MACKey()) {
			t.Errorf("ring %d: current %s, ring 0: %s (or MAC keys differ)", i, rings[i].CurrentID(), rings[0].CurrentID())
		}
	}
	keys, _ := filepath.Glob(filepath.Join(dir, "*"+keyFileSuffix))
	if len(keys) != 1 {
		t.Errorf("key files after concurrent start: %v, want one", keys)
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*")); len(tmp) != 0 {
		t.Errorf("temp files left: %v", tmp)
	}
}

// TestKeyRingSharedRotation: one instance rotates; another sharing the
// directory opens the new blobs at once and switches on Reload.
func TestKeyRingSharedRotation(t *testing.T) {
	dir := t.TempDir()
	ringA, err := OpenKeyRing(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	ringB, err := OpenKeyRing(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	storeA, _ := NewBlobStore(filepath.Join(dir, "blobs"), ringA)
	storeB, _ := NewBlobStore(filepath.Join(dir, "blobs"), ringB)
	newKey, err := ringA.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	info := putBytes(t, storeA, "after-rotation", []byte("hello"))
	if got := readBlob(t, storeB, info.ID, info.KeyID); string(got) != "hello" {
		t.Errorf("other instance read %q", got)
	}
	if err := ringB.Reload(); err != nil {
		t.Fatal(err)
	}
	if ringB.CurrentID() != newKey {
		t.Errorf("after Reload, CurrentID = %s, want %s", ringB.CurrentID(), newKey)
	}
	if _, err := ringB.Identity("../../etc/passwd"); err == nil {
		t.Error("Identity accepted a path as key id")
	}
}
