package store

import (
	"crypto/sha256"
	"errors"
	"time"
)

// Recipient verification (link.verify: recipient-code) keeps three kinds
// of short-lived state in the store, so it holds across instances on
// Redis and survives a restart on SQLite:
//
//   - codes: hashes of one-time codes mailed to a recipient, per subject
//     (one recipient of one message), each with its expiry;
//   - the subject's wrong-code count and lockout;
//   - fixed-window counters for rate limits (HitLimit).
//
// The store never sees a code or a recipient in clear: the caller passes
// CodeSubject(messageID, recipient) and an HMAC of the code.

// ErrLocked is AddCode's answer for a subject locked out by wrong codes:
// nothing was stored.
var ErrLocked = errors.New("verification locked")

// CodeOutcome is the verdict of CheckCode.
type CodeOutcome int

const (
	// CodeOK: the code matched a live code of the subject; every code of
	// the subject is now used up and its failure count cleared.
	CodeOK CodeOutcome = iota
	// CodeWrong: no live code matched (wrong, expired or used); the
	// failure was counted and the subject is not locked yet.
	CodeWrong
	// CodeLockedNow: this failure reached the limit; the subject is locked
	// until CodeCheck.LockedUntil and its codes are void.
	CodeLockedNow
	// CodeLocked: the subject was already locked; the code was not
	// checked and nothing was counted.
	CodeLocked
)

// CodeLimits bound the guesses at a subject's codes.
type CodeLimits struct {
	// MaxFailures wrong codes lock the subject (the last one included).
	MaxFailures int
	// LockFor is how long a lockout lasts, and how long after the last
	// wrong code the failure count is kept.
	LockFor time.Duration
}

// CodeCheck is what CheckCode found.
type CodeCheck struct {
	Outcome     CodeOutcome
	Failures    int       // wrong codes counted so far (CodeWrong)
	LockedUntil time.Time // CodeLockedNow, CodeLocked
}

// CodeSubject names one recipient of one message for the code store: a
// SHA-256, so neither the address nor the message ID is a key.
func CodeSubject(messageID, recipient string) []byte {
	h := sha256.New()
	h.Write([]byte("attachgate code subject\x00"))
	h.Write([]byte(messageID))
	h.Write([]byte{0})
	h.Write([]byte(recipient))
	return h.Sum(nil)
}

// codeStateGrace keeps code state a little past its last deadline.
const codeStateGrace = time.Minute
