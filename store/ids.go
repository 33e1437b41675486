package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"

	"github.com/google/uuid"
)

// tokenBytes is the entropy of a link token: 256 bits, so tokens cannot be
// guessed and their SHA-256 needs no salt.
const tokenBytes = 32

// NewID returns a new time-ordered ID (uuid v7) for a message, file or link.
// Time order keeps database indexes compact and makes IDs sort by creation.
func NewID() string {
	// NewV7 fails only when crypto/rand fails, which Go treats as fatal.
	return uuid.Must(uuid.NewV7()).String()
}

// NewToken returns a fresh link token (256 random bits, base64url without
// padding) and its hash, the only form a backend stores.
func NewToken() (token string, hash []byte, err error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("new link token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token), nil
}

// HashToken returns the SHA-256 of a token as presented in a URL; lookups use
// it so a leaked database does not leak working links.
func HashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}
