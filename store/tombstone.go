package store

import "time"

// Tombstone states: why a link whose file was purged no longer works.
const (
	TombstoneExpired = "expired" // the link (or its file) reached its expiry
	TombstoneRevoked = "revoked" // the sender (or an admin) withdrew it
)

// Tombstone is what is left of a link after its file was purged, so a
// recipient who clicks late learns the link expired or was withdrawn (and
// when) instead of being told it never existed. It holds no file data, no
// names and no addresses: the token hash, the state and its date.
type Tombstone struct {
	TokenHash []byte
	State     string    // TombstoneExpired or TombstoneRevoked
	At        time.Time // when the link expired or was revoked
	KeepUntil time.Time // the tombstone is gone after this
}

// TombstoneFor derives the tombstone of link l whose file expires at
// fileExpires: revoked wins over expired, and a link expires at the
// earlier of its own and its file's expiry.
func TombstoneFor(l Link, fileExpires, keepUntil time.Time) Tombstone {
	t := Tombstone{TokenHash: append([]byte(nil), l.TokenHash...), State: TombstoneExpired, At: l.ExpiresAt, KeepUntil: keepUntil}
	if !fileExpires.IsZero() && (t.At.IsZero() || fileExpires.Before(t.At)) {
		t.At = fileExpires
	}
	if !l.RevokedAt.IsZero() {
		t.State, t.At = TombstoneRevoked, l.RevokedAt
	}
	return t
}
