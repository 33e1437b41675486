package audit

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// storedRow is one audit_events row as scanned, reused across rows so
// export and verify allocate per event only what the driver hands over.
type storedRow struct {
	Seq         int64
	TimeNS      int64
	Type        string
	Actor       string
	ClientAddr  string
	UserAgent   string
	AuthUser    string
	Helo        string
	MessageID   string
	HeaderID    string
	Sender      string
	Recipients  sql.RawBytes // JSON array; valid until the next rows.Next
	Size        int64
	FileID      string
	FileName    string
	ContentType string
	SHA256      string
	LinkID      string
	Expires     string // canonical RFC 3339 UTC, "" when unset
	Reason      string
	Reply       string
	Detail      string
	PrevHash    string
	Hash        string
	MAC         string // "" for events written without a MAC key

	dest []any
}

// scanDest returns Scan destinations in eventColumns order.
func (r *storedRow) scanDest() []any {
	if r.dest == nil {
		r.dest = []any{
			&r.Seq, &r.TimeNS, &r.Type, &r.Actor, &r.ClientAddr, &r.UserAgent,
			&r.AuthUser, &r.Helo, &r.MessageID, &r.HeaderID, &r.Sender, &r.Recipients, &r.Size, &r.FileID,
			&r.FileName, &r.ContentType, &r.SHA256, &r.LinkID, &r.Expires, &r.Reason, &r.Reply, &r.Detail,
			&r.PrevHash, &r.Hash, &r.MAC,
		}
	}
	return r.dest
}

// decodeRecipients decodes the recipients column into buf's storage.
func (r *storedRow) decodeRecipients(buf []string) ([]string, error) {
	buf = buf[:0]
	if err := json.Unmarshal(r.Recipients, &buf); err != nil {
		return nil, fmt.Errorf("seq %d: recipients column: %w", r.Seq, err)
	}
	if buf == nil {
		buf = []string{}
	}
	return buf, nil
}

// canonical rebuilds the hashed encoding from the stored columns alone, so
// Verify checks exactly what export shows.
func (r *storedRow) canonical(recipients []string) canonicalEvent {
	return canonicalEvent{
		V:           canonicalVersion,
		Seq:         r.Seq,
		Time:        canonicalTime(time.Unix(0, r.TimeNS)),
		Type:        r.Type,
		Actor:       r.Actor,
		ClientAddr:  r.ClientAddr,
		UserAgent:   r.UserAgent,
		AuthUser:    r.AuthUser,
		Helo:        r.Helo,
		MessageID:   r.MessageID,
		HeaderID:    r.HeaderID,
		Sender:      r.Sender,
		Recipients:  recipients,
		Size:        r.Size,
		FileID:      r.FileID,
		FileName:    r.FileName,
		ContentType: r.ContentType,
		SHA256:      r.SHA256,
		LinkID:      r.LinkID,
		Expires:     r.Expires,
		Reason:      r.Reason,
		Reply:       r.Reply,
		Detail:      r.Detail,
		PrevHash:    r.PrevHash,
	}
}
