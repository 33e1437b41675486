package store

import (
	"fmt"
	"strings"
	"time"
)

// Link states of LinkFilter.State and LinkState, as the admin sees them.
const (
	LinkActive  = "active"  // usable now
	LinkExpired = "expired" // past the link's or its file's expiry, not revoked
	LinkRevoked = "revoked" // revoked (whatever its expiry)
	LinkLimit   = "limit"   // neither revoked nor expired, download limit used up
)

// Bounds of LinkFilter.Limit.
const (
	DefaultLinkListLimit = 100
	MaxLinkListLimit     = 1000
)

// LinkFilter selects links for ListLinks (the admin's view of links). Every
// field set must hold.
type LinkFilter struct {
	// Sender is the message's envelope sender, compared without ASCII
	// case (as SQLite's lower() does).
	Sender string
	// Recipient is one of the message's envelope recipients, compared
	// the same way.
	Recipient string
	// From and To bound the link's creation time: From <= created < To;
	// a zero bound is open.
	From, To time.Time
	// State is "" (any), LinkActive, LinkExpired, LinkRevoked or
	// LinkLimit, judged at Now.
	State string
	Now   time.Time
	// After is a link ID: only links with a greater ID are listed (the
	// last ID of the previous page).
	After string
	// Limit is the page size: DefaultLinkListLimit when <= 0, at most
	// MaxLinkListLimit.
	Limit int
}

// Check validates the filter and applies the default limit.
func (f *LinkFilter) Check() error {
	switch f.State {
	case "", LinkActive, LinkExpired, LinkRevoked, LinkLimit:
	default:
		return fmt.Errorf("state %q: want active, expired, revoked or limit", f.State)
	}
	if f.State != "" && f.Now.IsZero() {
		return fmt.Errorf("state %q needs the time to judge it at", f.State)
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return fmt.Errorf("from %s is not before to %s", f.From.Format(time.RFC3339), f.To.Format(time.RFC3339))
	}
	if f.Limit <= 0 {
		f.Limit = DefaultLinkListLimit
	}
	if f.Limit > MaxLinkListLimit {
		return fmt.Errorf("limit %d: at most %d", f.Limit, MaxLinkListLimit)
	}
	f.Sender = strings.TrimSpace(f.Sender)
	f.Recipient = strings.TrimSpace(f.Recipient)
	return nil
}

// EffectiveExpiry is when a link stops working: the earlier of the link's
// and its file's expiry.
func (v LinkView) EffectiveExpiry() time.Time {
	link, file := v.Link.ExpiresAt, v.File.ExpiresAt
	if link.IsZero() || (!file.IsZero() && file.Before(link)) {
		return file
	}
	return link
}

// LinkState says whether the link works at now: LinkRevoked wins over
// LinkExpired, which wins over LinkLimit (as CountDownload decides).
func (v LinkView) LinkState(now time.Time) string {
	switch {
	case !v.Link.RevokedAt.IsZero():
		return LinkRevoked
	case !now.Before(v.EffectiveExpiry()):
		return LinkExpired
	case v.Link.MaxDownloads > 0 && v.Link.Downloads >= v.Link.MaxDownloads:
		return LinkLimit
	default:
		return LinkActive
	}
}

// Matches reports whether v passes f (backends that cannot filter in
// their query language filter with it).
func (f LinkFilter) Matches(v LinkView) bool {
	if f.After != "" && v.Link.ID <= f.After {
		return false
	}
	if f.Sender != "" && !equalASCIIFold(v.Message.Sender, f.Sender) {
		return false
	}
	if f.Recipient != "" {
		found := false
		for _, r := range v.Message.Recipients {
			if equalASCIIFold(r, f.Recipient) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if !f.From.IsZero() && v.Link.CreatedAt.Before(f.From) {
		return false
	}
	if !f.To.IsZero() && !v.Link.CreatedAt.Before(f.To) {
		return false
	}
	return f.State == "" || v.LinkState(f.Now) == f.State
}

// equalASCIIFold compares without ASCII case only: addresses' local parts
// may be case-sensitive beyond ASCII, and SQLite's lower() folds ASCII
// only, so both backends agree.
func equalASCIIFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
