package admin

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/attachgate/attachgate/clientip"
)

// This file serves GET /metrics (Prometheus) and GET /readyz.
//
// /metrics is open to admin.metrics_networks without a token (a Prometheus
// server sends none by default) and otherwise takes a token of any role,
// from that token's networks, like every admin call. A refused scrape is
// audited as admin.denied; a served one is not (a scrape every 15 s would
// put thousands of events a day into the audit log, none of them about
// customer data).
//
// /readyz, like /healthz, needs no token: load balancers and orchestrators
// ask it. It answers 200 only when every readiness check passes (the store
// answers, the next hop greets), 503 otherwise, naming the failed checks
// but not their errors (those go to the log). Results are reused for
// readyCacheFor, and one check runs at a time, so a client polling it
// cannot make the gateway open connection after connection to the next
// hop.

// ReadyCheck is one condition of readiness.
type ReadyCheck struct {
	Name  string // "store", "next_hop"
	Check func(ctx context.Context) error
}

const (
	// readyTimeout bounds one round of readiness checks.
	readyTimeout = 10 * time.Second
	// readyCacheFor is how long a round's result is reused.
	readyCacheFor = 5 * time.Second
)

func (s *Server) mountMetrics(mux *http.ServeMux) {
	mux.HandleFunc("GET /readyz", s.handleReady)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	})
	if s.metrics == nil {
		return
	}
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	mux.HandleFunc("/metrics", s.guard(anyRole, s.methodNotAllowed("GET, HEAD")))
}

// handleMetrics serves the scrape to metrics networks, or to a caller whose
// token passes authorize.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if addr, ok := s.clientAddr(r); !ok || !clientip.Contains(loaded(&s.metricsNetworks), addr) {
		c, refused := s.authorize(r, anyRole)
		if refused != nil {
			s.refuse(w, r, c, *refused)
			return
		}
	}
	s.metrics.ServeHTTP(w, r)
}

// readiness runs the checks, at most once per readyCacheFor.
type readiness struct {
	checks []ReadyCheck
	now    func() time.Time

	mu     sync.Mutex // held while a round runs: one round at a time
	at     time.Time
	failed []string
	errs   []error
}

func (rd *readiness) run(ctx context.Context) (failed []string, errs []error, fresh bool) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if !rd.at.IsZero() && rd.now().Sub(rd.at) < readyCacheFor {
		return rd.failed, nil, false
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	rd.failed, rd.errs = nil, nil
	for _, c := range rd.checks {
		if err := c.Check(ctx); err != nil {
			rd.failed = append(rd.failed, c.Name)
			rd.errs = append(rd.errs, err)
		}
	}
	rd.at = rd.now()
	return rd.failed, rd.errs, true
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	failed, errs, fresh := s.ready.run(context.WithoutCancel(r.Context()))
	if fresh {
		for i, name := range failed {
			s.log.Warn("admin: readiness check failed", "check", name, "err", errs[i])
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var body strings.Builder
	status := http.StatusOK
	for _, c := range s.ready.checks {
		state := "ok"
		for _, f := range failed {
			if f == c.Name {
				state, status = "unavailable", http.StatusServiceUnavailable
			}
		}
		fmt.Fprintf(&body, "%s: %s\n", c.Name, state)
	}
	if status != http.StatusOK {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, body.String())
	}
}
