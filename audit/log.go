package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Log is an audit log backend: SQLiteLog in the embedded database, or
// RedisLog in a Redis shared by several gateway instances. Both keep the
// same hash chain, retention anchor and export format, so a log's contents
// read the same whichever backend holds them.
type Log interface {
	Recorder
	BatchRecorder
	// Export writes the events q selects, in seq order, as jsonl or csv.
	Export(ctx context.Context, q Query, w io.Writer, format string, bom bool) error
	// Verify recomputes the hash chain and reports the first break.
	Verify(ctx context.Context, w io.Writer) (VerifyResult, error)
	// Purge deletes the events dated before RetentionCutoff.
	Purge(ctx context.Context) (int64, error)
	// RunRetention purges at once and then every interval until ctx ends.
	RunRetention(ctx context.Context, every time.Duration)
	// RetentionCutoff is the start of the oldest local day kept.
	RetentionCutoff() time.Time
	// Location is the zone of exported times and day boundaries.
	Location() *time.Location
}

var (
	_ Log = (*SQLiteLog)(nil)
	_ Log = (*RedisLog)(nil)
)

// settings is what every backend takes from Options, defaults applied.
type settings struct {
	now       func() time.Time
	loc       *time.Location
	retention int
	logger    *slog.Logger
	macKey    []byte      // nil: events carry no MAC
	head      *headWriter // nil: no head outside the database
}

func newSettings(opts Options) (settings, error) {
	if opts.Retention < 0 {
		return settings{}, fmt.Errorf("audit: retention must be at least 1 day, got %d", opts.Retention)
	}
	s := settings{now: opts.Now, loc: opts.Location, retention: opts.Retention, logger: opts.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.loc == nil {
		s.loc = time.Local
	}
	if s.retention == 0 {
		s.retention = DefaultRetentionDays
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	s.logger = s.logger.With("component", "audit")
	if opts.HeadPath != "" && len(opts.MACKey) == 0 {
		return settings{}, errors.New("audit: a head file needs a MAC key to sign it")
	}
	s.macKey = opts.MACKey
	if opts.HeadPath != "" {
		s.head = &headWriter{path: opts.HeadPath, key: opts.MACKey}
	}
	return s, nil
}

// Location is the zone the log uses for exported times and day boundaries.
func (s *settings) Location() *time.Location { return s.loc }

// RetentionCutoff is the start of the oldest local day the log keeps:
// with Retention 90 and today 2026-11-25, 2026-08-28 00:00 in Location.
func (s *settings) RetentionCutoff() time.Time {
	today := s.now().In(s.loc)
	return s.dayStart(today, -(s.retention - 1))
}

// dayStart is 00:00 in the log's zone of date's calendar date plus days.
func (s *settings) dayStart(date time.Time, days int) time.Time {
	y, m, d := date.Date()
	return time.Date(y, m, d+days, 0, 0, 0, 0, s.loc)
}

// advanceHead records the newest committed event outside the database.
// The event is committed already, so a failure is logged, not returned:
// the head then lags, which Verify accepts (it only catches a database
// that ends before its head).
func (s *settings) advanceHead(ctx context.Context, seq int64, hash string) {
	if err := s.head.advance(seq, hash); err != nil {
		s.logger.ErrorContext(ctx, "audit: could not record the head outside the database", "seq", seq, "err", err)
	}
}

// runRetention is RunRetention for any backend's purge.
func (s *settings) runRetention(ctx context.Context, every time.Duration, purge func(context.Context) (int64, error)) {
	if every <= 0 {
		every = 24 * time.Hour
	}
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		removed, err := purge(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			s.logger.ErrorContext(ctx, "audit retention purge failed", "err", err)
		case removed > 0:
			s.logger.InfoContext(ctx, "audit retention purge", "removed", removed,
				"retention_days", s.retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// sealedEvent is an event ready to store: chain fields set, text valid
// UTF-8, and the stored forms of its time, recipients and expiry.
type sealedEvent struct {
	Event
	timeNS     int64
	recipients []byte // JSON array, [] when none
	expires    string // canonical RFC 3339, "" when unset
}

// seal links e to the chain head (lastSeq, lastHash) and hashes it. The
// caller must hold whatever makes reading the head and storing the event
// atomic. It sets e.Time when zero, and always Seq, PrevHash and Hash.
func (s *settings) seal(e Event, lastSeq int64, lastHash string) (sealedEvent, error) {
	if e.Type == "" {
		return sealedEvent{}, errors.New("event without type")
	}
	if e.Time.IsZero() {
		// Taken while the head is held, so time order follows seq order
		// (across processes as far as their clocks agree).
		e.Time = s.now()
	}
	timeNS, ok := unixNanos(e.Time)
	if !ok {
		return sealedEvent{}, fmt.Errorf("time %s outside the years 1678-2262", e.Time.Format(time.RFC3339))
	}
	if y := e.Expires.Year(); !e.Expires.IsZero() && (y < 0 || y > 9999) {
		return sealedEvent{}, fmt.Errorf("expires in year %d: RFC 3339 has four-digit years", y)
	}
	e.Seq = lastSeq + 1
	e.PrevHash = lastHash
	e.makeValidUTF8()
	canon := canonicalOf(&e)
	var err error
	if e.Hash, err = canonicalHash(&canon); err != nil {
		return sealedEvent{}, err
	}
	e.MAC = eventMAC(s.macKey, e.Hash)
	recipients, err := json.Marshal(canon.Recipients)
	if err != nil {
		return sealedEvent{}, fmt.Errorf("encode recipients: %w", err)
	}
	return sealedEvent{Event: e, timeNS: timeNS, recipients: recipients, expires: canon.Expires}, nil
}
