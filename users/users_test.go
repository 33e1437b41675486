package users

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestSetVerifyDelete(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := Set(path, "alice", "correct horse"); err != nil {
		t.Fatal(err)
	}
	if err := Set(path, "bob", "battery staple"); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("users file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), "correct horse") || !strings.Contains(string(raw), "alice:$argon2id$") {
		t.Fatalf("users file does not hold argon2id hashes only:\n%s", raw)
	}
	db, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, user, pass string
		ok               bool
	}{
		{"right password", "alice", "correct horse", true},
		{"wrong password", "alice", "correct horsE", false},
		{"other user's password", "alice", "battery staple", false},
		{"unknown user", "mallory", "correct horse", false},
		{"empty password", "bob", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := db.Verify(tt.user, tt.pass)
			if tt.ok != (err == nil) {
				t.Fatalf("Verify(%q, %q) = %v, want ok=%v", tt.user, tt.pass, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("error %v is not ErrBadCredentials", err)
			}
		})
	}
	if err := Set(path, "alice", "new password!"); err != nil {
		t.Fatal(err)
	}
	if err := Delete(path, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := Delete(path, "bob"); err == nil {
		t.Fatal("deleting a missing user succeeded")
	}
	if err := db.Reload(); err != nil {
		t.Fatal(err)
	}
	if db.Verify("alice", "new password!") != nil || db.Verify("alice", "correct horse") == nil || db.Verify("bob", "battery staple") == nil {
		t.Fatal("passwd/delete not visible after Reload")
	}
}

func TestBcryptHashesAccepted(t *testing.T) {
	h, _ := bcrypt.GenerateFromPassword([]byte("imported pw"), bcrypt.MinCost)
	path := filepath.Join(t.TempDir(), "users")
	os.WriteFile(path, []byte("carol:"+string(h)+"\n"), 0o600)
	db, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if db.Verify("carol", "imported pw") != nil || db.Verify("carol", "nope") == nil {
		t.Fatal("bcrypt verification wrong")
	}
}

func TestBadInput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	for _, name := range []string{"", "a:b", "with space", "tab\tname"} {
		if err := Set(path, name, "long enough"); err == nil {
			t.Errorf("Set accepted name %q", name)
		}
	}
	if err := Set(path, "dave", "short"); err == nil {
		t.Error("Set accepted a 5-character password")
	}
	os.WriteFile(path, []byte("erin:plaintext\n"), 0o600)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("plaintext password line: %v, want an error naming line 1", err)
	}
}
