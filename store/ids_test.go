package store_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"testing"

	"github.com/attachgate/attachgate/store"
	"github.com/google/uuid"
)

func TestNewToken(t *testing.T) {
	token, hash, err := store.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != 32 {
		t.Fatalf("token %q: %d bytes, %v; want 32 base64url bytes", token, len(raw), err)
	}
	sum := sha256.Sum256([]byte(token))
	if !bytes.Equal(hash, sum[:]) || !bytes.Equal(store.HashToken(token), sum[:]) {
		t.Error("hash is not SHA-256 of the token string")
	}
	other, _, _ := store.NewToken()
	if other == token {
		t.Error("two tokens are equal")
	}
}

func TestNewID(t *testing.T) {
	a, b := store.NewID(), store.NewID()
	u, err := uuid.Parse(a)
	if err != nil || u.Version() != 7 {
		t.Fatalf("NewID() = %q (%v), want a uuid v7", a, err)
	}
	if !(a < b) {
		t.Errorf("IDs not time-ordered: %q then %q", a, b)
	}
}
