// Package store owns attachgate's metadata: messages, the files taken out of
// them and the links that lead to those files. It defines the Store
// interface every backend implements (SQLite embedded, Redis for scale-out)
// and the token scheme: link tokens are 256 random bits, base64url, and only
// their SHA-256 is ever stored.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors a backend returns; callers test them with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExpired  = errors.New("link expired")
	ErrRevoked  = errors.New("link revoked")
	ErrLimit    = errors.New("download limit reached")
)

// Message is one relayed mail whose attachments were taken out.
type Message struct {
	ID         string // uuid v7
	MessageID  string // the Message-ID header, as sent
	Sender     string // envelope MAIL FROM
	Recipients []string
	ClientAddr string
	AuthUser   string // SMTP AUTH identity, "" when relayed by network trust
	CreatedAt  time.Time

	// Subject is the decoded Subject header, shown to the sender on the
	// manage page and in receipts; "" when the message had none.
	Subject string
	// Lang is the language of pages and notices about this message: en,
	// ja or both (the rule's, else links.language).
	Lang string
	// Verify is how a visitor proves to be a recipient: VerifyNone or
	// VerifyRecipientCode.
	Verify string
	// NotifySender is what the envelope sender is told: NotifyNone,
	// NotifyReceipt or NotifyDownloads.
	NotifySender string
	// PageTokenHash is the SHA-256 of the message page token
	// (base_url/m/{token}); nil when the message has no page.
	PageTokenHash []byte
	// ManageTokenHash is the SHA-256 of the sender's manage token
	// (base_url/s/{token}); nil when the sender got none.
	ManageTokenHash []byte
}

// Values of Message.Verify and Message.NotifySender.
const (
	VerifyNone          = ""
	VerifyRecipientCode = "recipient-code"
	NotifyNone          = ""
	NotifyReceipt       = "receipt"
	NotifyDownloads     = "downloads"
)

// Kinds of message token (MessageByTokenHash).
type MessageToken int

const (
	PageToken   MessageToken = iota // base_url/m/{token}
	ManageToken                     // base_url/s/{token}
)

// MessageView is a message with every link of its files, ordered by file
// ID then link ID.
type MessageView struct {
	Message Message
	Links   []LinkView
}

// File is one attachment stored encrypted in the blob store.
type File struct {
	ID          string // uuid v7; also the blob ID in the vault
	MessageID   string // Message.ID
	Name        string // decoded original file name (UTF-8)
	ContentType string
	Size        int64  // plaintext bytes
	SHA256      string // lowercase hex of the plaintext
	KeyID       string // key ring entry the blob is encrypted to
	CreatedAt   time.Time
	ExpiresAt   time.Time
}

// Link is a download link for one file. The token itself is never stored.
type Link struct {
	ID           string // uuid v7; the public, loggable name of the link
	FileID       string
	TokenHash    []byte // SHA-256 of the token
	CreatedAt    time.Time
	ExpiresAt    time.Time
	RevokedAt    time.Time // zero when not revoked
	MaxDownloads int       // 0 = unlimited
	Downloads    int
}

// LinkView is everything a landing page or a download needs about a link.
type LinkView struct {
	Link    Link
	File    File
	Message Message
}

// Store is the metadata store. Implementations must be safe for concurrent
// use, and CountDownload must be atomic across processes sharing the store.
type Store interface {
	// CreateMessage records a message and, in the same transaction, its
	// files and their links.
	CreateMessage(ctx context.Context, m Message, files []File, links []Link) error
	// DeleteMessage removes a message with its files and links (rollback
	// after a failed relay) and returns the removed files so the caller can
	// delete their blobs. An unknown message gives ErrNotFound.
	DeleteMessage(ctx context.Context, id string) ([]File, error)
	// LinkByTokenHash finds a link by the SHA-256 of its token. It returns
	// the link even when expired or revoked; ErrNotFound when unknown.
	LinkByTokenHash(ctx context.Context, hash []byte) (LinkView, error)
	// LinkByID finds a link by its ID (signed download URLs carry the ID).
	LinkByID(ctx context.Context, id string) (LinkView, error)
	// ListLinks lists the links that match f, ordered by link ID (oldest
	// first), at most f.Limit of them (links.go).
	ListLinks(ctx context.Context, f LinkFilter) ([]LinkView, error)
	// MessageByTokenHash finds a message by the SHA-256 of its page or
	// manage token, with all its links (expired and revoked included);
	// ErrNotFound when unknown.
	MessageByTokenHash(ctx context.Context, kind MessageToken, hash []byte) (MessageView, error)
	// MessageByID finds a message by its ID with all its links.
	MessageByID(ctx context.Context, id string) (MessageView, error)
	// CountDownload atomically checks that the link is usable at now and
	// increments its download counter. It returns ErrNotFound, ErrExpired,
	// ErrRevoked or ErrLimit when it is not; the counter is then unchanged.
	CountDownload(ctx context.Context, linkID string, now time.Time) (Link, error)
	// RevokeLink marks a link revoked at now. Revoking again keeps the
	// first time and returns nil; an unknown link gives ErrNotFound.
	RevokeLink(ctx context.Context, linkID string, now time.Time) error
	// ExpiredFiles lists up to limit files whose ExpiresAt is before now
	// (limit <= 0: all of them).
	ExpiredFiles(ctx context.Context, now time.Time, limit int) ([]File, error)
	// DeleteFile removes a file and its links, and the message too when
	// this was its last file (its addresses are personal data, kept only as
	// long as its files). An unknown file gives ErrNotFound.
	DeleteFile(ctx context.Context, id string) error
	// BuryLinks writes a tombstone for every link of a file, kept until
	// keepUntil, before the file is deleted. Writing again replaces them.
	// An unknown file gives ErrNotFound.
	BuryLinks(ctx context.Context, fileID string, keepUntil time.Time) (int, error)
	// TombstoneByTokenHash finds the tombstone of a purged link;
	// ErrNotFound when there is none or it is past its KeepUntil at now.
	TombstoneByTokenHash(ctx context.Context, hash []byte, now time.Time) (Tombstone, error)
	// PurgeTombstones removes tombstones whose KeepUntil is before now and
	// returns how many it removed (backends that expire them on their own
	// may return 0).
	PurgeTombstones(ctx context.Context, now time.Time) (int, error)
	// RecordAccess records a view or download of a file and reports
	// whether it was the first download of that file by a.Recipient (for
	// an unverified visitor, Recipient "", the first download of the file
	// at all); always false for a view. The check and the write are one
	// atomic step across instances. Only the newest MaxAccessesPerMessage
	// records of a message are kept. An unknown file gives ErrNotFound.
	RecordAccess(ctx context.Context, a Access) (first bool, err error)
	// Accesses lists the kept access records of a message, oldest first
	// (none for an unknown message).
	Accesses(ctx context.Context, messageID string) ([]Access, error)
	// RevokeMessage revokes every link of the message at now and returns
	// how many were not revoked before (the first revocation time stays).
	// An unknown message gives ErrNotFound.
	RevokeMessage(ctx context.Context, messageID string, now time.Time) (int, error)
	// SetMessageExpiry sets ExpiresAt of every file and link of the
	// message to t; the expiry purge then removes the files at t. An
	// unknown message gives ErrNotFound.
	SetMessageExpiry(ctx context.Context, messageID string, t time.Time) error
	// AddCode stores the hash of a one-time code for subject
	// (CodeSubject), valid until expires; ErrLocked while the subject is
	// locked out.
	AddCode(ctx context.Context, subject, codeHash []byte, expires, now time.Time) error
	// CheckCode checks one attempt at subject's codes and counts it,
	// atomically across processes: a match uses up every code of the
	// subject; MaxFailures wrong codes lock it for LockFor.
	CheckCode(ctx context.Context, subject, codeHash []byte, lim CodeLimits, now time.Time) (CodeCheck, error)
	// HitLimit counts one event against key in a fixed window of the
	// given length and reports whether the window's count is within
	// limit, atomically across processes.
	HitLimit(ctx context.Context, key string, limit int, window time.Duration, now time.Time) (bool, error)
	// Close releases the backend.
	Close() error
}
