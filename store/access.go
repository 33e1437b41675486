package store

import "time"

// Kinds of Access.
const (
	AccessView     = "view"     // a page about the file was shown (landing page, message page)
	AccessDownload = "download" // the file's bytes started to flow (download.ok)
)

// MaxAccessesPerMessage bounds the access records kept per message: past
// it, recording a new one drops the oldest. Whether a recipient has
// downloaded a file at all (RecordAccess's first-download answer) is kept
// apart and never dropped while the file lives.
const MaxAccessesPerMessage = 1000

// Access is one view or download of a file, shown to the sender on the
// manage page. It is personal data (an address, a client address) and
// lives only as long as the file: DeleteFile and DeleteMessage remove it.
type Access struct {
	MessageID string
	LinkID    string
	FileID    string
	Kind      string // AccessView or AccessDownload
	At        time.Time
	// Recipient is the envelope recipient the visitor proved to be (by a
	// one-time code); "" when not verified.
	Recipient  string
	ClientAddr string
}
