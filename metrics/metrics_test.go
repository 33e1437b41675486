package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	dto "github.com/prometheus/client_model/go"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/store"
)

func newTestMetrics(t *testing.T) *Metrics {
	t.Helper()
	return New(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// value reads one series from the registry: a counter's or gauge's value,
// a histogram's sample count. Labels must match exactly; a missing series
// fails the test.
func value(t *testing.T, m *Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			if !sameLabels(s.GetLabel(), labels) {
				continue
			}
			switch {
			case s.Counter != nil:
				return s.Counter.GetValue()
			case s.Gauge != nil:
				return s.Gauge.GetValue()
			case s.Histogram != nil:
				return float64(s.Histogram.GetSampleCount())
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func sameLabels(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if want[l.GetName()] != l.GetValue() {
			return false
		}
	}
	return true
}

func openStore(t *testing.T) *store.SQLite {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "attachgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestRecorderCountsWhatTheAuditLogKept records through the wrapper into a
// real SQLite audit log: every kept event counts by type and feeds the
// metrics that follow from it; a failed append counts as an audit error
// only.
func TestRecorderCountsWhatTheAuditLogKept(t *testing.T) {
	m := newTestMetrics(t)
	st := openStore(t)
	log, err := audit.NewSQLite(st.DB(), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rec := m.Recorder(log)
	ctx := context.Background()
	if err := audit.RecordAll(ctx, rec, []audit.Event{
		{Type: audit.TypeMailReceived, Actor: "smtp", Size: 9000},
		{Type: audit.TypeFileStored, Actor: "smtp", Size: 1234, FileName: "a.pdf"},
		{Type: audit.TypeFileStored, Actor: "smtp", Size: 766, FileName: "b.pdf"},
	}); err != nil {
		t.Fatal(err)
	}
	for _, e := range []audit.Event{
		{Type: audit.TypeDownloadOK, Actor: "web"},
		{Type: audit.TypeDownloadDenied, Actor: "web", Reason: "expired"},
		{Type: audit.TypeDownloadDenied, Actor: "web", Reason: "Some <free> text\nthat is not a label"},
		{Type: audit.TypeNoticeSent, Actor: "system", Detail: "kind=code id=01 attempt=1"},
		{Type: audit.TypeNoticeFailed, Actor: "system", Detail: "kind=receipt id=02 attempt=5 error=refused"},
		{Type: "admin.link.revoke", Actor: "admin:ops"},
	} {
		if err := rec.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"attachgate_audit_events_total", map[string]string{"type": "file.stored"}, 2},
		{"attachgate_audit_events_total", map[string]string{"type": "mail.received"}, 1},
		{"attachgate_audit_events_total", map[string]string{"type": "admin.link.revoke"}, 1},
		{"attachgate_stored_bytes_total", nil, 2000},
		{"attachgate_downloads_total", map[string]string{"outcome": "ok", "reason": ""}, 1},
		{"attachgate_downloads_total", map[string]string{"outcome": "denied", "reason": "expired"}, 1},
		{"attachgate_downloads_total", map[string]string{"outcome": "denied", "reason": "other"}, 1},
		{"attachgate_notices_sent_total", map[string]string{"kind": "code"}, 1},
		{"attachgate_notices_failed_total", map[string]string{"kind": "receipt"}, 1},
		{"attachgate_audit_events_total", map[string]string{"type": "notice.failed"}, 1},
		{"attachgate_audit_errors_total", nil, 0},
	}
	for _, c := range checks {
		if got := value(t, m, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// The database goes away: appends fail, and only the error counts.
	st.Close()
	if err := rec.Record(ctx, audit.Event{Type: audit.TypeDownloadOK, Actor: "web"}); err == nil {
		t.Fatal("Record on a closed database succeeded")
	}
	if err := audit.RecordAll(ctx, rec, []audit.Event{{Type: audit.TypeFileStored, Size: 5}}); err == nil {
		t.Fatal("RecordAll on a closed database succeeded")
	}
	if got := value(t, m, "attachgate_audit_errors_total", nil); got != 2 {
		t.Errorf("audit errors = %v, want 2", got)
	}
	if got := value(t, m, "attachgate_downloads_total", map[string]string{"outcome": "ok", "reason": ""}); got != 1 {
		t.Errorf("a failed download.ok append was counted as a download: %v", got)
	}
	if got := value(t, m, "attachgate_stored_bytes_total", nil); got != 2000 {
		t.Errorf("a failed file.stored append was counted as stored bytes: %v", got)
	}
}

// TestStoreCountsFailuresNotVerdicts uses a real SQLite store: "not found"
// is the store's answer, a closed database is its failure.
func TestStoreCountsFailuresNotVerdicts(t *testing.T) {
	m := newTestMetrics(t)
	raw := openStore(t)
	st := m.Store(raw)
	ctx := context.Background()
	if _, err := st.LinkByID(ctx, store.NewID()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LinkByID of an unknown link: %v, want ErrNotFound", err)
	}
	if err := st.RevokeLink(ctx, store.NewID(), time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("RevokeLink of an unknown link: %v, want ErrNotFound", err)
	}
	if _, err := st.TombstoneByTokenHash(ctx, []byte("unknown token hash, 32 bytes...."), time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TombstoneByTokenHash of an unknown token: %v, want ErrNotFound", err)
	}
	if p, ok := st.(interface{ Ping(context.Context) error }); !ok || p.Ping(ctx) != nil {
		t.Fatal("the wrapped store lost its Ping")
	}
	raw.Close()
	if _, err := st.LinkByID(ctx, store.NewID()); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LinkByID on a closed database: %v, want a failure", err)
	}
	if err := st.CreateMessage(ctx, store.Message{ID: store.NewID(), CreatedAt: time.Now()}, nil, nil); err == nil {
		t.Fatal("CreateMessage on a closed database succeeded")
	}
	if got := value(t, m, "attachgate_store_errors_total", map[string]string{"op": "link_by_id"}); got != 1 {
		t.Errorf("link_by_id errors = %v, want 1 (the not-found answer is no error)", got)
	}
	if _, err := st.TombstoneByTokenHash(ctx, []byte("unknown token hash, 32 bytes...."), time.Now()); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("TombstoneByTokenHash on a closed database: %v, want a failure", err)
	}
	if got := value(t, m, "attachgate_store_errors_total", map[string]string{"op": "tombstone_by_token"}); got != 1 {
		t.Errorf("tombstone_by_token errors = %v, want 1 (the not-found answer is no error)", got)
	}
	if got := value(t, m, "attachgate_store_errors_total", map[string]string{"op": "create_message"}); got != 1 {
		t.Errorf("create_message errors = %v, want 1", got)
	}
	if p := st.(interface{ Ping(context.Context) error }); p.Ping(ctx) == nil {
		t.Error("Ping of a closed database succeeded")
	}
}

// TestHopTimesEachStep relays through the wrapper to a real go-smtp next
// hop: every step is timed, the next hop's refusal is an answer, and a
// dead next hop counts as a connect failure.
func TestHopTimesEachStep(t *testing.T) {
	m := newTestMetrics(t)
	next := smtptest.NewServer(t, smtptest.Behaviour{RejectRcpt: map[string]*smtp.SMTPError{
		"nobody@example.net": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}}})
	hop := m.Hop(relay.New(next.Addr, "gw.test", 10*time.Second, relay.TLSNone, nil))
	s, err := hop.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Mail("alice@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Rcpt("bob@example.net", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Rcpt("nobody@example.net", nil); err == nil {
		t.Fatal("the next hop's 550 did not come through")
	}
	w, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: hi\r\n\r\nhello\r\n")
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if len(next.Messages()) != 1 {
		t.Fatalf("next hop got %d messages, want 1", len(next.Messages()))
	}
	for op, want := range map[string]float64{HopConnect: 1, HopMail: 1, HopRcpt: 2, HopData: 1, HopEndOfData: 1} {
		if got := value(t, m, "attachgate_next_hop_latency_seconds", map[string]string{"op": op}); got != want {
			t.Errorf("latency samples of %s = %v, want %v", op, got, want)
		}
	}
	if got := value(t, m, "attachgate_next_hop_errors_total", map[string]string{"op": HopConnect}); got != 0 {
		t.Errorf("connect errors = %v before any failure", got)
	}

	// Nothing listens here any more: a transport failure, not a latency.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	if _, err := m.Hop(relay.New(dead, "gw.test", 5*time.Second, relay.TLSNone, nil)).Open(context.Background()); err == nil {
		t.Fatal("dialing a closed port succeeded")
	}
	if got := value(t, m, "attachgate_next_hop_errors_total", map[string]string{"op": HopConnect}); got != 1 {
		t.Errorf("connect errors = %v, want 1", got)
	}
	if got := value(t, m, "attachgate_next_hop_latency_seconds", map[string]string{"op": HopConnect}); got != 1 {
		t.Errorf("a failed connect was timed as a latency: %v samples", got)
	}
}

// TestListenerCountsOpenConnections opens real TCP connections.
func TestListenerCountsOpenConnections(t *testing.T) {
	m := newTestMetrics(t)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := m.Listener(raw)
	defer l.Close()
	accepted := make(chan net.Conn, 3)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var server []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		server = append(server, <-accepted)
	}
	if got := value(t, m, "attachgate_smtp_sessions", nil); got != 3 {
		t.Fatalf("sessions = %v with 3 open, want 3", got)
	}
	server[0].Close()
	server[0].Close() // a second Close must not count twice
	server[1].Close()
	if got := value(t, m, "attachgate_smtp_sessions", nil); got != 1 {
		t.Fatalf("sessions = %v after closing 2 of 3, want 1", got)
	}
}

// TestHandlerServesTextFormat scrapes over HTTP: the documented series and
// the Go runtime are there, and a held-messages count that fails leaves
// its series out without failing the scrape.
func TestHandlerServesTextFormat(t *testing.T) {
	m := newTestMetrics(t)
	m.DiskFree(t.TempDir())
	var fail atomic.Bool
	m.WatchHeld(func(ctx context.Context) (map[string]int, error) {
		if fail.Load() {
			return nil, errors.New("database is locked")
		}
		return map[string]int{HeldQuarantined: 2, HeldHolding: 1}, nil
	})
	m.MessageDone(OutcomeRelayed, 30*time.Millisecond, 2, 1)
	m.MessageDone(OutcomeHeld, 10*time.Millisecond, 0, 0)
	ts := httptest.NewServer(m.Handler())
	defer ts.Close()
	scrape := func() string {
		resp, err := http.Get(ts.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("scrape: %s\n%s", resp.Status, body)
		}
		return string(body)
	}
	body := scrape()
	for _, want := range []string{
		`attachgate_messages_total{outcome="relayed"} 1`,
		`attachgate_messages_total{outcome="held"} 1`,
		`attachgate_messages_total{outcome="deferred"} 0`,
		`attachgate_attachments_total{action="linked"} 2`,
		`attachgate_attachments_total{action="kept"} 1`,
		`attachgate_held_messages{state="quarantined"} 2`,
		`attachgate_held_messages{state="holding"} 1`,
		`attachgate_held_messages{state="retrying"} 0`,
		`attachgate_smtp_sessions 0`,
		"attachgate_storage_free_bytes ",
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	fail.Store(true)
	body = scrape()
	if strings.Contains(body, "attachgate_held_messages{") {
		t.Error("a failed count still exported held messages")
	}
	// The error is counted while the scrape gathers, possibly after the
	// error counter was gathered: the next scrape shows it for sure.
	body = scrape()
	if !strings.Contains(body, `attachgate_store_errors_total{op="held_count"} 1`) &&
		!strings.Contains(body, `attachgate_store_errors_total{op="held_count"} 2`) {
		t.Error("a failed count of held messages was not counted as a store error")
	}
}

// TestNilMetricsIsInert: components built without metrics take the nil
// *Metrics and get their inputs back unchanged.
func TestNilMetricsIsInert(t *testing.T) {
	var m *Metrics
	st := openStore(t)
	if got := m.Store(st); got != store.Store(st) {
		t.Error("nil Metrics wrapped the store")
	}
	m.MessageDone(OutcomeRelayed, time.Second, 1, 1)
	m.StoreError("x")
	m.SessionOpened()
	m.WatchHeld(nil)
	m.DiskFree("/")
}
