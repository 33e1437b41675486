package vault

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
)

// Key ring file layout inside the keys directory.
const (
	keyFileSuffix = ".age-key" // <keyid>.age-key holds one AGE-SECRET-KEY-1... line
	currentFile   = "current"  // names the key new blobs are encrypted to
	macKeyFile    = "mac.key"  // 32 raw bytes for signing download URLs
	macKeySize    = 32
	tempPrefix    = ".tmp-" // in-flight writes; never loaded as keys
)

// validKeyID keeps key IDs safe to use as file names.
var validKeyID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// KeyRing holds the age X25519 identities blobs are encrypted to. New blobs
// go to the current key; old keys stay so older blobs still open. Several
// processes may share one keys directory: each file is written to a temp
// name and then linked or renamed into place, so readers never see half a
// key and two first starts agree on one current key.
type KeyRing struct {
	dir string
	mac []byte

	mu      sync.RWMutex
	current string
	keys    map[string]*age.X25519Identity
}

// OpenKeyRing opens the key ring in dir (storage.dir/keys), creating the
// directory, a first key and the MAC secret on first start.
func OpenKeyRing(dir string) (*KeyRing, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open key ring %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("open key ring %s: %w", dir, err)
	}
	// Anyone who can write here can swap the current key for one they know.
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return nil, fmt.Errorf("open key ring: directory %s has mode %04o; it must not be writable by group or others (chmod 700)", dir, perm)
	}
	k := &KeyRing{dir: dir, keys: make(map[string]*age.X25519Identity)}
	k.cleanStaleTemp()
	if k.mac, err = k.loadOrCreateMAC(); err != nil {
		return nil, fmt.Errorf("open key ring %s: %w", dir, err)
	}
	if err := k.loadAll(); err != nil {
		return nil, fmt.Errorf("open key ring %s: %w", dir, err)
	}
	current, err := k.loadOrCreateCurrent()
	if err != nil {
		return nil, fmt.Errorf("open key ring %s: %w", dir, err)
	}
	if _, err := k.Identity(current); err != nil {
		return nil, fmt.Errorf("open key ring %s: current key: %w", dir, err)
	}
	k.current = current
	return k, nil
}

// CurrentID returns the ID of the key new blobs are encrypted to.
func (k *KeyRing) CurrentID() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.current
}

// Current returns the current key's ID and its recipient, read together so
// the ID recorded for a blob always matches the key it was encrypted to.
func (k *KeyRing) Current() (keyID string, recipient age.Recipient) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.current, k.keys[k.current].Recipient()
}

// Identity returns the identity for keyID. A key this process has not seen
// (another instance rotated) is loaded from disk.
func (k *KeyRing) Identity(keyID string) (age.Identity, error) {
	k.mu.RLock()
	id, ok := k.keys[keyID]
	k.mu.RUnlock()
	if ok {
		return id, nil
	}
	if !validKeyID.MatchString(keyID) {
		return nil, fmt.Errorf("key %q: invalid key id", keyID)
	}
	id, err := k.loadKey(keyID)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.keys[keyID] = id
	k.mu.Unlock()
	return id, nil
}

// Identities returns every loaded identity, ordered by key ID.
func (k *KeyRing) Identities() []age.Identity {
	k.mu.RLock()
	defer k.mu.RUnlock()
	ids := make([]age.Identity, 0, len(k.keys))
	for _, keyID := range k.idsLocked() {
		ids = append(ids, k.keys[keyID])
	}
	return ids
}

// IDs returns the IDs of every loaded key, sorted (key IDs sort by creation).
func (k *KeyRing) IDs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.idsLocked()
}

func (k *KeyRing) idsLocked() []string {
	ids := make([]string, 0, len(k.keys))
	for id := range k.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// MACKey returns a copy of the secret for signing download URLs. It does not
// change on rotation: rotating it would break URLs already handed out.
func (k *KeyRing) MACKey() []byte {
	return slices.Clone(k.mac)
}

// Rotate makes a new key current and returns its ID. Old keys stay on disk
// and in the ring for decryption.
func (k *KeyRing) Rotate() (string, error) {
	keyID, id, err := k.createKey()
	if err != nil {
		return "", fmt.Errorf("rotate key: %w", err)
	}
	if err := writeFileReplace(k.dir, currentFile, []byte(keyID+"\n")); err != nil {
		return "", fmt.Errorf("rotate key: %w", err)
	}
	k.mu.Lock()
	k.keys[keyID] = id
	k.current = keyID
	k.mu.Unlock()
	return keyID, nil
}

// Reload rereads the current key ID, so a rotation done by another process
// sharing the directory takes effect here.
func (k *KeyRing) Reload() error {
	current, err := k.readCurrent()
	if err != nil {
		return fmt.Errorf("reload key ring %s: %w", k.dir, err)
	}
	if _, err := k.Identity(current); err != nil {
		return fmt.Errorf("reload key ring %s: %w", k.dir, err)
	}
	k.mu.Lock()
	k.current = current
	k.mu.Unlock()
	return nil
}

func (k *KeyRing) loadOrCreateMAC() ([]byte, error) {
	path := filepath.Join(k.dir, macKeyFile)
	mac, err := readPrivateFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		mac = make([]byte, macKeySize)
		if _, err := rand.Read(mac); err != nil {
			return nil, fmt.Errorf("generate MAC key: %w", err)
		}
		err = writeFileExclusive(k.dir, macKeyFile, mac)
		if errors.Is(err, fs.ErrExist) {
			// Another process created it first: use theirs.
			mac, err = readPrivateFile(path)
		}
	}
	if err != nil {
		return nil, err
	}
	if len(mac) != macKeySize {
		return nil, fmt.Errorf("MAC key %s: %d bytes, want %d", path, len(mac), macKeySize)
	}
	return mac, nil
}

func (k *KeyRing) loadOrCreateCurrent() (string, error) {
	current, err := k.readCurrent()
	if !errors.Is(err, fs.ErrNotExist) {
		return current, err
	}
	keyID, id, err := k.createKey()
	if err != nil {
		return "", err
	}
	err = writeFileExclusive(k.dir, currentFile, []byte(keyID+"\n"))
	if errors.Is(err, fs.ErrExist) {
		// Lost the first-start race: drop our never-used key, take theirs.
		os.Remove(filepath.Join(k.dir, keyID+keyFileSuffix))
		return k.readCurrent()
	}
	if err != nil {
		return "", err
	}
	k.mu.Lock()
	k.keys[keyID] = id
	k.mu.Unlock()
	return keyID, nil
}

func (k *KeyRing) readCurrent() (string, error) {
	path := filepath.Join(k.dir, currentFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read current key id: %w", err)
	}
	keyID := strings.TrimSpace(string(b))
	if !validKeyID.MatchString(keyID) {
		return "", fmt.Errorf("current key file %s: invalid key id %q", path, keyID)
	}
	return keyID, nil
}

// loadAll loads every key file so Identities covers all blobs on disk.
func (k *KeyRing) loadAll() error {
	entries, err := os.ReadDir(k.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		keyID, ok := strings.CutSuffix(name, keyFileSuffix)
		if !ok || !e.Type().IsRegular() || !validKeyID.MatchString(keyID) {
			continue
		}
		id, err := k.loadKey(keyID)
		if errors.Is(err, fs.ErrNotExist) {
			// A process that lost the first-start race removed its unused
			// key between our listing and our read; nothing was
			// encrypted to it.
			continue
		}
		if err != nil {
			return err
		}
		k.keys[keyID] = id
	}
	return nil
}

func (k *KeyRing) loadKey(keyID string) (*age.X25519Identity, error) {
	path := filepath.Join(k.dir, keyID+keyFileSuffix)
	b, err := readPrivateFile(path)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", keyID, err)
	}
	id, err := age.ParseX25519Identity(strings.TrimSpace(string(b)))
	if err != nil {
		// Do not wrap: the parse error could quote key material.
		return nil, fmt.Errorf("key file %s: not an age X25519 identity", path)
	}
	return id, nil
}

func (k *KeyRing) createKey() (string, *age.X25519Identity, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", nil, fmt.Errorf("generate key: %w", err)
	}
	keyID := newKeyID(time.Now())
	if err := writeFileExclusive(k.dir, keyID+keyFileSuffix, []byte(id.String()+"\n")); err != nil {
		return "", nil, fmt.Errorf("write key %s: %w", keyID, err)
	}
	return keyID, id, nil
}

// newKeyID returns IDs like "k20260115T093012Z-3fa9c2d1": readable for
// admins, sorted by creation, unique across processes by the random tail.
func newKeyID(now time.Time) string {
	var r [4]byte
	rand.Read(r[:])
	return "k" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(r[:])
}

// cleanStaleTemp removes temp files a crashed writer left. Recent ones may
// belong to another process writing right now.
func (k *KeyRing) cleanStaleTemp() {
	entries, _ := os.ReadDir(k.dir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.Remove(filepath.Join(k.dir, e.Name()))
		}
	}
}

// readPrivateFile reads a secret, refusing files others can read: a key
// that leaked to other local users is not a key we should keep using.
func readPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %04o; it must not be accessible by group or others (chmod 600)", path, perm)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// writeFileExclusive creates dir/name with data (mode 0600) only if it does
// not exist; it fails with an error matching fs.ErrExist otherwise. Writing
// a temp file and hard-linking it gives readers a complete file and an
// atomic create-if-absent, also over NFS.
func writeFileExclusive(dir, name string, data []byte) error {
	tmp, err := writeTemp(dir, name, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	return syncDir(dir)
}

// writeFileReplace atomically replaces dir/name with data (mode 0600).
func writeFileReplace(dir, name string, data []byte) error {
	tmp, err := writeTemp(dir, name, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replace %s: %w", name, err)
	}
	return syncDir(dir)
}

func writeTemp(dir, name string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, tempPrefix+name+"-*") // mode 0600
	if err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return f.Name(), nil
}
