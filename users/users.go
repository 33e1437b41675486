// Package users owns the SMTP AUTH user database: a text file of
// "name:hash" lines, password hashing (argon2id for new passwords, bcrypt
// accepted for imported ones) and constant-effort verification.
package users

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"unicode"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Argon2id parameters (RFC 9106 second recommended option, lighter memory
// so that a burst of logins does not exhaust a small gateway).
const (
	argonTime    = 3
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 2
	argonKeyLen  = 32
	saltLen      = 16
)

// dummyHash has the cost of a real hash; unknown users are checked against
// it so that timing does not tell which names exist.
const dummyHash = "$argon2id$v=19$m=65536,t=3,p=2$oFrTNzeQM7UUc+nmp6jo7g$vcAcBZ/AoiDGGLQcoVS9iomxCvUtcwee/ZarWg9Zm1Q"

// ErrBadCredentials is the one error a failed login gets, whatever failed.
var ErrBadCredentials = errors.New("invalid user name or password")

// DB is a loaded users file. It is safe for concurrent use.
type DB struct {
	path  string
	mu    sync.RWMutex
	hash  map[string]string
	dummy string
}

// Load reads the users file. A missing file is an empty database.
func Load(path string) (*DB, error) {
	db := &DB{path: path, hash: map[string]string{}, dummy: dummyHash}
	if err := db.Reload(); err != nil {
		return nil, err
	}
	return db, nil
}

// Reload reads the file again (on SIGHUP, after `attachgate user add`).
func (db *DB) Reload() error {
	data, err := os.ReadFile(db.path)
	if errors.Is(err, os.ErrNotExist) {
		data = nil
	} else if err != nil {
		return fmt.Errorf("read users file: %w", err)
	}
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, hash, ok := strings.Cut(text, ":")
		if !ok || ValidateName(name) != nil || !knownHash(hash) {
			return fmt.Errorf("users file %s line %d: want name:HASH with an argon2id or bcrypt hash (use attachgate user add)", db.path, line)
		}
		m[name] = hash
	}
	db.mu.Lock()
	db.hash = m
	db.mu.Unlock()
	return nil
}

// Verify checks a password; the error is ErrBadCredentials for any mismatch.
func (db *DB) Verify(name, password string) error {
	db.mu.RLock()
	h, ok := db.hash[name]
	db.mu.RUnlock()
	if !ok {
		check(db.dummy, password)
		return ErrBadCredentials
	}
	if !check(h, password) {
		return ErrBadCredentials
	}
	return nil
}

// Len is the number of users.
func (db *DB) Len() int {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return len(db.hash)
}

// ValidateName accepts names usable in SMTP AUTH and in our file format.
func ValidateName(name string) error {
	if name == "" || len(name) > 256 {
		return fmt.Errorf("user name must be 1 to 256 bytes")
	}
	for _, r := range name {
		if r == ':' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("user name %q must not contain ':', spaces or control characters", name)
		}
	}
	return nil
}

// Hash returns a PHC-format argon2id hash of password.
func Hash(password string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime,
		argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

func knownHash(h string) bool {
	return strings.HasPrefix(h, "$argon2id$") || strings.HasPrefix(h, "$2a$") ||
		strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")
}

func check(hash, password string) bool {
	if strings.HasPrefix(hash, "$2") {
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
	}
	var version, mem, t int
	var threads uint8
	parts := strings.Split(hash, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &t, &threads); err != nil ||
		mem <= 0 || mem > 1<<22 || t <= 0 || t > 20 || threads == 0 {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, uint32(t), uint32(mem), threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// Set adds or replaces a user in the file at path (atomically).
func Set(path, name, password string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if len(password) < 8 {
		return errors.New("password must be at least 8 characters")
	}
	h, err := Hash(password)
	if err != nil {
		return err
	}
	return edit(path, func(m map[string]string) error {
		m[name] = h
		return nil
	})
}

// Exists tells whether name is in the file at path.
func Exists(path, name string) (bool, error) {
	found := false
	err := edit(path, func(m map[string]string) error {
		_, found = m[name]
		return errUnchanged
	})
	if errors.Is(err, errUnchanged) {
		err = nil
	}
	return found, err
}

// Delete removes a user from the file at path.
func Delete(path, name string) error {
	return edit(path, func(m map[string]string) error {
		if _, ok := m[name]; !ok {
			return fmt.Errorf("no user %q in %s", name, path)
		}
		delete(m, name)
		return nil
	})
}

var errUnchanged = errors.New("unchanged")

func edit(path string, change func(map[string]string) error) error {
	db := &DB{path: path}
	if err := db.Reload(); err != nil {
		return err
	}
	if err := change(db.hash); err != nil {
		return err
	}
	names := make([]string, 0, len(db.hash))
	for n := range db.hash {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# attachgate SMTP AUTH users: name:hash. Manage with `attachgate user`.\n")
	for _, n := range names {
		b.WriteString(n + ":" + db.hash[n] + "\n")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("users file dir: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".users-*")
	if err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("write users file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write users file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write users file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	return nil
}
