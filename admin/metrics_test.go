package admin

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/attachgate/attachgate/metrics"
	"github.com/attachgate/attachgate/store"
)

func testMetricsHandler(t *testing.T) *metrics.Metrics {
	t.Helper()
	m := metrics.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.MessageDone(metrics.OutcomeRelayed, 0, 1, 0)
	return m
}

// TestMetricsAccess: who may scrape /metrics, and what each refusal leaves
// in the audit log. A served scrape leaves nothing.
func TestMetricsAccess(t *testing.T) {
	const scraped = `attachgate_messages_total{outcome="relayed"} 1`
	tests := []struct {
		name       string
		networks   []netip.Prefix
		proxies    []netip.Prefix
		secret     string
		header     map[string]string
		wantStatus int
		wantReason string // of the admin.denied event; "" = none recorded
	}{
		{name: "no token, no metrics networks", secret: "", wantStatus: 401, wantReason: ReasonNoToken},
		{name: "auditor token", secret: auditorSecret, wantStatus: 200},
		{name: "admin token", secret: opsSecret, wantStatus: 200},
		{name: "bad token", secret: "guess", wantStatus: 401, wantReason: ReasonBadToken},
		{name: "token from a network it may not be used from", secret: remoteSecret, wantStatus: 403, wantReason: ReasonNetwork},
		{name: "metrics network, no token", networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, wantStatus: 200},
		{name: "metrics network, bad token", networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			secret: "guess", wantStatus: 200},
		// The attack: claim a metrics network in X-Forwarded-For from a
		// peer that is no trusted proxy.
		{name: "forged X-Forwarded-For from an untrusted peer", networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
			header: map[string]string{"X-Forwarded-For": "192.0.2.9"}, wantStatus: 401, wantReason: ReasonNoToken},
		{name: "metrics network behind a trusted proxy", networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
			proxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			header:  map[string]string{"X-Forwarded-For": "192.0.2.9"}, wantStatus: 200},
		{name: "other network behind a trusted proxy", networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
			proxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
			header:  map[string]string{"X-Forwarded-For": "203.0.113.4"}, wantStatus: 401, wantReason: ReasonNoToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{metrics: testMetricsHandler(t).Handler(),
				metricsNetworks: tt.networks, trustedProxies: tt.proxies})
			resp := h.call("GET", "/metrics", tt.secret, tt.header)
			if resp.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.status, tt.wantStatus, resp.body)
			}
			if tt.wantStatus == 200 {
				if !strings.Contains(string(resp.body), scraped) {
					t.Fatalf("scrape lacks %q:\n%s", scraped, resp.body)
				}
				if ct := resp.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("Content-Type = %q, want the text format", ct)
				}
			} else if strings.Contains(string(resp.body), "attachgate_") {
				t.Fatalf("a refused scrape got metrics: %s", resp.body)
			}
			denied := h.eventsOfType(TypeDenied)
			if tt.wantReason == "" {
				if len(h.events()) != 0 {
					t.Fatalf("a served scrape was audited: %+v", h.events())
				}
				return
			}
			if len(denied) != 1 || denied[0].Reason != tt.wantReason {
				t.Fatalf("denied events = %+v, want one with reason %q", denied, tt.wantReason)
			}
		})
	}
}

// TestMetricsRoutes: POST is refused after authentication; without a
// metrics handler the route does not exist.
func TestMetricsRoutes(t *testing.T) {
	h := newHarness(t, harnessOptions{metrics: testMetricsHandler(t).Handler()})
	if resp := h.call("POST", "/metrics", opsSecret, nil); resp.status != 405 || resp.header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /metrics = %d (Allow %q), want 405 with Allow: GET, HEAD", resp.status, resp.header.Get("Allow"))
	}
	off := newHarness(t, harnessOptions{})
	if resp := off.call("GET", "/metrics", opsSecret, nil); resp.status != 404 {
		t.Fatalf("GET /metrics without metrics = %d, want 404", resp.status)
	}
}

// TestReadyz runs a real store check on SQLite: 200 while it answers, 503
// naming the failed check once the database is gone; no token needed,
// nothing audited.
func TestReadyz(t *testing.T) {
	var db *store.SQLite
	h := newHarness(t, harnessOptions{ready: func(st *store.SQLite) []ReadyCheck {
		db = st
		return []ReadyCheck{
			{Name: "store", Check: st.Ping},
			{Name: "next_hop", Check: func(context.Context) error { return nil }},
		}
	}})
	resp := h.call("GET", "/readyz", "", nil)
	if resp.status != 200 || string(resp.body) != "store: ok\nnext_hop: ok\n" {
		t.Fatalf("readyz = %d %q, want 200 with every check ok", resp.status, resp.body)
	}
	if resp := h.call("HEAD", "/readyz", "", nil); resp.status != 200 || len(resp.body) != 0 {
		t.Fatalf("HEAD readyz = %d %q", resp.status, resp.body)
	}
	if resp := h.call("POST", "/readyz", "", nil); resp.status != 405 {
		t.Fatalf("POST readyz = %d, want 405", resp.status)
	}
	if n := len(h.events()); n != 0 {
		t.Fatalf("readyz was audited: %d events", n)
	}

	db.DB().Close()
	// The last answer is reused for a few seconds; wait for a fresh round.
	waitFor(t, func() bool {
		resp = h.call("GET", "/readyz", "", nil)
		return resp.status == 503
	})
	if string(resp.body) != "store: unavailable\nnext_hop: ok\n" {
		t.Fatalf("readyz body = %q, want the store named as unavailable", resp.body)
	}
	if resp.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if strings.Contains(string(resp.body), "closed") {
		t.Errorf("readyz shows the error text to an unauthenticated client: %q", resp.body)
	}
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 60s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestReadyzOneRoundForManyCallers: callers that come while a round runs,
// or right after it, get its answer: polling /readyz cannot make the
// gateway open connection after connection to the next hop.
func TestReadyzOneRoundForManyCallers(t *testing.T) {
	var rounds atomic.Int32
	release := make(chan struct{})
	h := newHarness(t, harnessOptions{ready: func(*store.SQLite) []ReadyCheck {
		return []ReadyCheck{{Name: "next_hop", Check: func(context.Context) error {
			if rounds.Add(1) == 1 {
				<-release
			}
			return nil
		}}}
	}})
	const callers = 20
	var wg sync.WaitGroup
	statuses := make(chan int, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(h.url + "/readyz")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	waitFor(t, func() bool { return rounds.Load() == 1 })
	close(release)
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 200 {
			t.Errorf("status %d, want 200", s)
		}
	}
	if n := rounds.Load(); n != 1 {
		t.Fatalf("%d callers ran %d rounds of checks, want 1", callers, n)
	}
}
