package linkserver

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/attachgate/attachgate/audit"
)

// maxTrackedClients bounds the limiter's memory; beyond it, new clients
// share one overflow window (and are limited together).
const maxTrackedClients = 10000

// overflowClient names the shared window of untracked clients.
const overflowClient = "(other clients)"

// reasonRateLimited is the download.denied reason of a request refused
// with 429 because its client was denied too often.
const reasonRateLimited = "rate_limited"

// denialLimiter keeps the audit log from being flooded by refused
// requests (anyone can invent tokens) while still recording the attack.
// Per client and window (a client is an IPv4 address or an IPv6 /64, see
// Server.clientKey; the events keep each request's real address): the first burst denials are recorded one
// by one; further ones are counted per reason and written as one
// download.denied event when the window ends, its Detail saying how many
// it stands for and over what time; beyond limit the client gets 429
// without any store lookup until the window ends.
type denialLimiter struct {
	s      *Server
	window time.Duration
	burst  int
	limit  int

	mu      sync.Mutex
	clients map[string]*clientWindow
	closed  bool
}

type clientWindow struct {
	key     string
	count   int
	pending map[string]*pendingDenials // by type and reason
	timer   *time.Timer
}

type pendingDenials struct {
	event       audit.Event // the first denial of its kind not recorded alone
	client      string      // the limiter's key: an address, an IPv6 /64 or overflowClient
	n           int
	first, last time.Time
}

func newDenialLimiter(s *Server, window time.Duration, burst, limit int) *denialLimiter {
	return &denialLimiter{s: s, window: window, burst: burst, limit: max(limit, burst),
		clients: map[string]*clientWindow{}}
}

// windowFor returns the client's current window, opening one; the caller
// holds mu.
func (d *denialLimiter) windowFor(key string) *clientWindow {
	if w, ok := d.clients[key]; ok {
		return w
	}
	if len(d.clients) >= maxTrackedClients {
		key = overflowClient
		if w, ok := d.clients[key]; ok {
			return w
		}
	}
	w := &clientWindow{key: key, pending: map[string]*pendingDenials{}}
	d.clients[key] = w
	w.timer = time.AfterFunc(d.window, func() { d.flush(w) })
	return w
}

// blocked reports whether the client (its key) is over its limit in this
// window.
func (d *denialLimiter) blocked(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	w, ok := d.clients[key]
	if !ok && len(d.clients) >= maxTrackedClients {
		w, ok = d.clients[overflowClient]
	}
	return ok && w.count >= d.limit
}

// deny counts one denial of the client of r and records e at once while
// the client is within its burst; otherwise e joins the aggregate of its
// type and reason.
func (d *denialLimiter) deny(r *http.Request, e audit.Event) {
	key := d.s.clientKey(r)
	now := time.Now()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		_ = d.s.record(r, e)
		return
	}
	w := d.windowFor(key)
	w.count++
	if w.count <= d.burst {
		d.mu.Unlock()
		_ = d.s.record(r, e) // logged there; the answer is a refusal anyway
		return
	}
	// By type and reason: a verify.failed (csrf) must not be counted
	// into a download.denied (csrf) aggregate.
	kind := string(e.Type) + " " + e.Reason
	p, ok := w.pending[kind]
	if !ok {
		p = &pendingDenials{event: e, client: w.key, first: now}
		if w.key == overflowClient {
			p.event.ClientAddr = overflowClient
		}
		w.pending[kind] = p
	}
	p.n++
	p.last = now
	d.mu.Unlock()
}

// flush ends a client's window and records its aggregates.
func (d *denialLimiter) flush(w *clientWindow) {
	d.mu.Lock()
	if d.clients[w.key] == w {
		delete(d.clients, w.key)
	}
	pending := w.pending
	w.pending = map[string]*pendingDenials{}
	d.mu.Unlock()
	d.recordAggregates(pending)
}

func (d *denialLimiter) recordAggregates(pending map[string]*pendingDenials) {
	reasons := make([]string, 0, len(pending))
	for reason := range pending {
		reasons = append(reasons, reason)
	}
	sort.Strings(reasons)
	for _, reason := range reasons {
		p := pending[reason]
		e := p.event
		e.Time = time.Time{}
		e.Detail = aggregateDetail(p)
		ctx, cancel := context.WithTimeout(context.Background(), auditTimeout)
		if err := d.s.audit.Record(ctx, e); err != nil {
			d.s.log.Error("linkserver: audit record of aggregated denials failed",
				"client", e.ClientAddr, "reason", reason, "count", p.n, "err", err)
		}
		cancel()
	}
}

// aggregateDetail is the Detail of an aggregated download.denied event.
// Its shape is part of the export contract (README, "Refused requests").
func aggregateDetail(p *pendingDenials) string {
	return fmt.Sprintf("aggregated: %d denials (reason %s) from %s between %s and %s",
		p.n, p.event.Reason, p.client, p.first.UTC().Format(time.RFC3339), p.last.UTC().Format(time.RFC3339))
}

// close records every pending aggregate and stops the timers; later
// denials are recorded one by one.
func (d *denialLimiter) close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	windows := make([]*clientWindow, 0, len(d.clients))
	for _, w := range d.clients {
		w.timer.Stop()
		windows = append(windows, w)
	}
	d.clients = map[string]*clientWindow{}
	d.mu.Unlock()
	for _, w := range windows {
		d.mu.Lock()
		pending := w.pending
		w.pending = map[string]*pendingDenials{}
		d.mu.Unlock()
		d.recordAggregates(pending)
	}
}

// refuseIfLimited answers 429 when the client is over its denial limit,
// counting the refusal; it reports whether it did.
func (s *Server) refuseIfLimited(w http.ResponseWriter, r *http.Request) bool {
	if !s.denials.blocked(s.clientKey(r)) {
		return false
	}
	e := s.webEvent(r, audit.TypeDownloadDenied)
	e.Reason = reasonRateLimited
	s.denials.deny(r, e)
	w.Header().Set("Retry-After", strconv.Itoa(int((s.denials.window+time.Second-1)/time.Second)))
	s.renderError(w, r, pageTooManyRequests)
	return true
}
