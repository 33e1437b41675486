// Package audit owns the audit log: one schema of events for every mail,
// file, link, download and admin action, a hash chain that makes edits and
// deletions evident, retention (90 days including today by default) and
// export as CSV or JSON lines.
package audit

import (
	"context"
	"fmt"
	"time"
)

// Event is one audit record. Type names are stable and documented in the
// README ("mail.received", "file.stored", "download.ok", ...). Fields that do
// not apply to a type stay empty.
type Event struct {
	Time        time.Time // set by the log when zero
	Seq         int64     // set by the log: strictly increasing
	Type        EventType
	Actor       string // who acted: "smtp", "web", "admin:<token name>", "system"
	ClientAddr  string
	UserAgent   string
	AuthUser    string
	Helo        string
	MessageID   string // store.Message.ID of the message concerned
	HeaderID    string // the mail's Message-ID header
	Sender      string
	Recipients  []string
	Size        int64
	FileID      string
	FileName    string
	ContentType string
	SHA256      string
	LinkID      string // never the token
	Expires     time.Time
	Reason      string // why denied, rejected or deferred
	Reply       string // next hop's reply, SMTP code and text
	Detail      string // free text for admin actions and system events
	PrevHash    string // set by the log
	Hash        string // set by the log
	MAC         string // set by the log when it has a MAC key: HMAC of Hash
}

// Recorder appends events. Record must not fail silently: callers on the
// mail path treat an error as a temporary failure.
type Recorder interface {
	Record(ctx context.Context, e Event) error
}

// BatchRecorder appends several events atomically: all or none, in order,
// in one durable write. A message's arrival and each of its files and
// links are one batch, so the mail path waits for one commit, not many.
type BatchRecorder interface {
	RecordAll(ctx context.Context, events []Event) error
}

// RecordAll appends events through rec, in one batch when rec can. An
// event without a type refuses the whole batch before anything is written.
func RecordAll(ctx context.Context, rec Recorder, events []Event) error {
	if err := checkBatch(events); err != nil {
		return err
	}
	if b, ok := rec.(BatchRecorder); ok {
		return b.RecordAll(ctx, events)
	}
	for _, e := range events {
		if err := rec.Record(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

func checkBatch(events []Event) error {
	for i, e := range events {
		if e.Type == "" {
			return fmt.Errorf("audit: record batch: event %d without type", i)
		}
	}
	return nil
}
