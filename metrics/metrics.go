// Package metrics owns attachgate's Prometheus metrics: every name, help
// text and label lives here, in one registry per daemon, together with the
// decorators that feed them from the outside of the packages they watch:
// the audit recorder (events by type), the metadata store (errors), the
// next hop (latency, transport failures) and the SMTP listener (open
// sessions). It imports only the bottom layers (audit, store, relay), so
// any package may use it; every method works on a nil *Metrics and then
// does nothing, so a component without metrics needs no special case.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every attachgate metric.
const Namespace = "attachgate"

// Message outcomes (label outcome of attachgate_messages_total): what the
// SMTP client was told.
const (
	OutcomeRelayed  = "relayed"  // the next hop accepted it (250)
	OutcomeHeld     = "held"     // a policy held it in the quarantine (250)
	OutcomeRejected = "rejected" // refused for good (5xx): by the next hop, a policy or a limit
	OutcomeDeferred = "deferred" // refused for now (4xx): the next hop, or an internal failure
)

// Attachment actions (label action of attachgate_attachments_total).
const (
	AttachmentLinked = "linked"
	AttachmentKept   = "kept"
)

// Metrics is the set of attachgate's metrics and their registry.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	messages        *prometheus.CounterVec
	messageDuration *prometheus.HistogramVec
	attachments     *prometheus.CounterVec
	storedBytes     prometheus.Counter
	downloads       *prometheus.CounterVec
	notices         *prometheus.CounterVec
	noticesFailed   *prometheus.CounterVec
	auditEvents     *prometheus.CounterVec
	auditErrors     prometheus.Counter
	storeErrors     *prometheus.CounterVec
	hopLatency      *prometheus.HistogramVec
	hopErrors       *prometheus.CounterVec
	smtpSessions    prometheus.Gauge
}

// New builds the metrics and registers them, with the Go runtime and
// process collectors, in a registry of their own (never the global one:
// two daemons in one test binary must not share counters).
func New(log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "metrics")
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		log: log,
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "messages_total",
			Help: "Messages received over SMTP, by the outcome their client was given: relayed, held, rejected (5xx) or deferred (4xx).",
		}, []string{"outcome"}),
		messageDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "message_duration_seconds",
			Help:    "Time from the start of DATA to the reply to the client, by outcome.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"outcome"}),
		attachments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "attachments_total",
			Help: "Attachments of relayed messages, by what happened to them: linked (stored, replaced by a link) or kept in the mail.",
		}, []string{"action"}),
		storedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "stored_bytes_total",
			Help: "Bytes of attachments stored in the vault (plaintext size, as in file.stored events).",
		}),
		downloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "downloads_total",
			Help: "Downloads by outcome (ok, denied) and, when denied, the reason of the download.denied event.",
		}, []string{"outcome", "reason"}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "notices_sent_total",
			Help: "Mail the gateway composed itself (codes, receipts, notices, DSNs) that the next hop accepted, by kind (audit events notice.sent).",
		}, []string{"kind"}),
		noticesFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "notices_failed_total",
			Help: "Mail the gateway composed itself that will not reach its recipients (refused for good, given up after retries, not queued), by kind (audit events notice.failed).",
		}, []string{"kind"}),
		auditEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "audit_events_total",
			Help: "Audit events recorded, by type.",
		}, []string{"type"}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "audit_errors_total",
			Help: "Audit appends that failed (each failed batch counts once).",
		}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "store_errors_total",
			Help: "Metadata store calls that failed for another reason than the answer itself (not found, expired, revoked, limit), by operation.",
		}, []string{"op"}),
		hopLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "next_hop_latency_seconds",
			Help:    "Time the next hop took to answer, by step: connect (dial, TLS, EHLO), mail, rcpt, data (DATA command), end_of_data (after the final dot: its verdict on the message).",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"op"}),
		hopErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "next_hop_errors_total",
			Help: "Next hop conversations that failed in transport (no reply, dropped connection, TLS, or 421), by step.",
		}, []string{"op"}),
		smtpSessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "smtp_sessions",
			Help: "SMTP client connections open now.",
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.messages, m.messageDuration, m.attachments, m.storedBytes, m.downloads, m.notices, m.noticesFailed,
		m.auditEvents, m.auditErrors, m.storeErrors, m.hopLatency, m.hopErrors, m.smtpSessions,
	)
	// Labelled series that exist from the start, so rate() and alerts see
	// a zero instead of nothing before the first event.
	for _, o := range []string{OutcomeRelayed, OutcomeHeld, OutcomeRejected, OutcomeDeferred} {
		m.messages.WithLabelValues(o)
	}
	m.attachments.WithLabelValues(AttachmentLinked)
	m.attachments.WithLabelValues(AttachmentKept)
	m.downloads.WithLabelValues("ok", "")
	m.auditErrors.Add(0)
	for _, op := range []string{HopConnect, HopEndOfData} {
		m.hopErrors.WithLabelValues(op)
	}
	return m
}

// Registry is where the metrics live, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format. A collector
// that fails leaves its series out instead of failing the whole scrape.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slogPromLog{m.log},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// MessageDone counts one SMTP transaction's outcome, how long it took, and
// for a relayed message what happened to its attachments.
func (m *Metrics) MessageDone(outcome string, d time.Duration, linked, kept int) {
	if m == nil {
		return
	}
	m.messages.WithLabelValues(outcome).Inc()
	m.messageDuration.WithLabelValues(outcome).Observe(d.Seconds())
	if outcome == OutcomeRelayed {
		m.attachments.WithLabelValues(AttachmentLinked).Add(float64(linked))
		m.attachments.WithLabelValues(AttachmentKept).Add(float64(kept))
	}
}

// SessionOpened and SessionClosed track open SMTP connections; use
// Listener rather than calling them directly.
func (m *Metrics) SessionOpened() {
	if m != nil {
		m.smtpSessions.Inc()
	}
}

// SessionClosed is SessionOpened's counterpart.
func (m *Metrics) SessionClosed() {
	if m != nil {
		m.smtpSessions.Dec()
	}
}

// labelRE bounds what may become a label value taken from an event field
// (reasons, notice kinds): code-defined words, never free text.
var labelRE = regexp.MustCompile(`^[a-z][a-z0-9_ .-]{0,31}$`)

func boundedLabel(s string) string {
	if s == "" || labelRE.MatchString(s) {
		return s
	}
	return "other"
}

// slogPromLog routes promhttp's error log into slog.
type slogPromLog struct{ log *slog.Logger }

func (l slogPromLog) Println(v ...any) {
	l.log.Warn("metrics: scrape error", "err", v)
}

// HeldCounts returns the number of held messages by state; see Held.
type HeldCounts func(ctx context.Context) (map[string]int, error)

// Held states (label state of attachgate_held_messages).
const (
	HeldQuarantined = "quarantined" // waits for an admin
	HeldHolding     = "holding"     // waits for its timed release
	HeldRetrying    = "retrying"    // a release failed; it is tried again
)

// heldTimeout bounds the query behind one scrape of the held gauge.
const heldTimeout = 5 * time.Second

// WatchHeld exports attachgate_held_messages{state}, read from count at
// each scrape (the quarantine is the truth; a gauge kept by hand would
// drift from it across restarts and instances). A failed count leaves the
// series out of that scrape and counts a store error (op held_count).
func (m *Metrics) WatchHeld(count HeldCounts) {
	if m == nil || count == nil {
		return
	}
	m.reg.MustRegister(&heldCollector{m: m, count: count, desc: prometheus.NewDesc(
		prometheus.BuildFQName(Namespace, "", "held_messages"),
		"Messages held in the quarantine now, by state: quarantined (waits for an admin), holding (waits for its timed release), retrying (a release failed).",
		[]string{"state"}, nil)})
}

type heldCollector struct {
	m     *Metrics
	count HeldCounts
	desc  *prometheus.Desc
}

func (c *heldCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *heldCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), heldTimeout)
	defer cancel()
	counts, err := c.count(ctx)
	if err != nil {
		c.m.StoreError("held_count")
		c.m.log.Warn("metrics: counting held messages failed", "err", err)
		return
	}
	for _, s := range []string{HeldQuarantined, HeldHolding, HeldRetrying} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[s]), s)
	}
}

// StoreError counts one failed store call of operation op.
func (m *Metrics) StoreError(op string) {
	if m != nil {
		m.storeErrors.WithLabelValues(op).Inc()
	}
}

// DiskFree exports attachgate_storage_free_bytes and
// attachgate_storage_size_bytes for the file system holding dir, read at
// each scrape, for a "disk low" alert without node_exporter.
func (m *Metrics) DiskFree(dir string) {
	if m == nil {
		return
	}
	m.reg.MustRegister(&diskCollector{m: m, dir: dir,
		free: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "storage", "free_bytes"),
			"Bytes available to attachgate on the file system of storage.dir.", nil, nil),
		size: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "storage", "size_bytes"),
			"Size of the file system of storage.dir.", nil, nil)})
}
