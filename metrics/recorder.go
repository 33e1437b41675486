package metrics

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/attachgate/attachgate/audit"
)

// Recorder wraps next so that every event it records successfully is
// counted: by type, and into the metrics that follow from events (stored
// bytes, downloads, notices). A failed append counts as an audit error and
// nothing else. Every outcome that matters is audited already, so counting
// here keeps metrics and audit log telling the same story.
func (m *Metrics) Recorder(next audit.Recorder) audit.Recorder {
	if m == nil {
		return next
	}
	return &recorder{m: m, next: next}
}

type recorder struct {
	m    *Metrics
	next audit.Recorder
}

func (r *recorder) Record(ctx context.Context, e audit.Event) error {
	if err := r.next.Record(ctx, e); err != nil {
		r.m.auditErrors.Inc()
		return err
	}
	r.m.countEvent(e)
	return nil
}

// Unwrap is the wrapped log.
func (r *recorder) Unwrap() audit.Recorder { return r.next }

// RecordWith keeps next's shared transaction (the pipeline records a
// message's metadata and events with one commit) and counts the events.
func (r *recorder) RecordWith(ctx context.Context, events []audit.Event, extra audit.TxFunc) error {
	rw, ok := r.next.(interface {
		RecordWith(context.Context, []audit.Event, audit.TxFunc) error
	})
	if !ok {
		return errors.New("metrics: the wrapped audit log cannot share a transaction")
	}
	if err := rw.RecordWith(ctx, events, extra); err != nil {
		r.m.auditErrors.Inc()
		return err
	}
	for _, e := range events {
		r.m.countEvent(e)
	}
	return nil
}

// DB is the wrapped log's database (nil when it has none).
func (r *recorder) DB() *sql.DB {
	if d, ok := r.next.(interface{ DB() *sql.DB }); ok {
		return d.DB()
	}
	return nil
}

// Append keeps next's group commit for events nobody waits for
// (mail.relayed) and counts them once committed; without it, they are
// recorded at once.
func (r *recorder) Append(events []audit.Event, then func(error)) {
	a, ok := r.next.(interface {
		Append([]audit.Event, func(error))
	})
	if !ok {
		err := r.RecordAll(context.Background(), events)
		if then != nil {
			then(err)
		}
		return
	}
	a.Append(events, func(err error) {
		if err != nil {
			r.m.auditErrors.Inc()
		} else {
			for _, e := range events {
				r.m.countEvent(e)
			}
		}
		if then != nil {
			then(err)
		}
	})
}

// RecordAll keeps next's batching (one durable write per batch).
func (r *recorder) RecordAll(ctx context.Context, events []audit.Event) error {
	if err := audit.RecordAll(ctx, r.next, events); err != nil {
		r.m.auditErrors.Inc()
		return err
	}
	for _, e := range events {
		r.m.countEvent(e)
	}
	return nil
}

func (m *Metrics) countEvent(e audit.Event) {
	typ := e.Type
	if !audit.KnownType(typ) {
		typ = "other"
	}
	m.auditEvents.WithLabelValues(string(typ)).Inc()
	switch {
	case e.Type == audit.TypeFileStored:
		m.storedBytes.Add(float64(e.Size))
	case e.Type == audit.TypeDownloadOK:
		m.downloads.WithLabelValues("ok", "").Inc()
	case e.Type == audit.TypeDownloadDenied:
		m.downloads.WithLabelValues("denied", boundedLabel(e.Reason)).Inc()
	case e.Type == audit.TypeNoticeSent:
		m.notices.WithLabelValues(noticeKind(e.Detail)).Inc()
	case e.Type == audit.TypeNoticeFailed:
		m.noticesFailed.WithLabelValues(noticeKind(e.Detail)).Inc()
	}
}

// noticeKind reads the kind from a notice event's Detail
// ("kind=code id=... attempt=1", package notify).
func noticeKind(detail string) string {
	for _, f := range strings.Fields(detail) {
		if k, ok := strings.CutPrefix(f, "kind="); ok {
			return boundedLabel(k)
		}
	}
	return "other"
}
