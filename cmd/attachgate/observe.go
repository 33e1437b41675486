package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/attachgate/attachgate/admin"
	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/metrics"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/quarantine"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/store"
)

// observed is what serve hands to every component instead of the bare
// backend: the same store, audit log and next hop, counted into metrics.
type observed struct {
	metrics *metrics.Metrics
	store   store.Store    // errors counted
	audit   audit.Recorder // events counted by type
	hop     relay.Hop      // latency and transport failures
	ready   []admin.ReadyCheck
}

// observe wraps b and hop with the metrics of m and builds the readiness
// checks of GET /readyz: the store answers (Ping) and the next hop greets.
// The checks use the bare store and hop, so probes do not count as mail
// traffic in the metrics.
func observe(m *metrics.Metrics, b *backend, hop relay.Hop, log *slog.Logger) *observed {
	o := &observed{metrics: m, store: m.Store(b.store), audit: m.Recorder(b.audit), hop: m.Hop(hop)}
	o.ready = []admin.ReadyCheck{
		{Name: "store", Check: func(ctx context.Context) error {
			if p, ok := b.store.(interface{ Ping(context.Context) error }); ok {
				return p.Ping(ctx)
			}
			return nil
		}},
		{Name: "next_hop", Check: func(ctx context.Context) error {
			s, err := hop.Open(ctx)
			if err != nil {
				return err
			}
			if err := s.Close(); err != nil {
				log.Debug("readiness: next hop QUIT", "err", err)
			}
			return nil
		}},
	}
	return o
}

// heldCounts reads the quarantine's states for attachgate_held_messages.
func heldCounts(q *quarantine.Manager) metrics.HeldCounts {
	return func(ctx context.Context) (map[string]int, error) {
		items, err := q.List(ctx)
		if err != nil {
			return nil, fmt.Errorf("list held messages: %w", err)
		}
		counts := map[string]int{}
		for _, it := range items {
			switch {
			case it.Attempts > 0: // released, recipients pending
				counts[metrics.HeldRetrying]++
			case it.Action != policies.Hold:
				counts[metrics.HeldQuarantined]++
			default:
				counts[metrics.HeldHolding]++
			}
		}
		return counts, nil
	}
}
