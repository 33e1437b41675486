package metrics

import (
	"context"
	"strings"

	"github.com/attachgate/attachgate/audit"
)

// TypeNoticeSent is the audit event type the gateway's own mail (notices,
// codes, receipts) is expected to record, Detail naming the kind; the
// notices counter follows it, so it stays zero until such mail exists.
const TypeNoticeSent = "notice.sent"

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
	if !audit.KnownType(typ) && typ != TypeNoticeSent {
		typ = "other"
	}
	m.auditEvents.WithLabelValues(typ).Inc()
	switch {
	case e.Type == audit.TypeFileStored:
		m.storedBytes.Add(float64(e.Size))
	case e.Type == audit.TypeDownloadOK:
		m.downloads.WithLabelValues("ok", "").Inc()
	case e.Type == audit.TypeDownloadDenied:
		m.downloads.WithLabelValues("denied", boundedLabel(e.Reason)).Inc()
	case e.Type == TypeNoticeSent:
		m.notices.WithLabelValues(boundedLabel(strings.TrimSpace(e.Detail))).Inc()
	}
}
