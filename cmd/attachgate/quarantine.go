package main

import (
	"context"
	"log/slog"

	"github.com/attachgate/attachgate/admin"
	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/linkserver"
	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/quarantine"
	"github.com/attachgate/attachgate/store"
)

// openQuarantine opens held mail (policy actions quarantine and hold): its
// index in the SQLite database, its blobs under storage.dir/quarantine.
// The pipeline holds mail there and releases it through hop. With
// store.backend redis there is none (nil): the configuration refuses
// quarantine and hold rules there.
func openQuarantine(c *config.Config, b *backend, obs *observed, p *pipeline.Pipeline, notices *notify.Service, log *slog.Logger) (*quarantine.Manager, error) {
	if n := c.PolicyEngine().Rules(); n > 0 {
		log.Info("policies loaded", "rules", n)
	}
	sq, ok := b.raw.(*store.SQLite)
	if !ok {
		log.Info("quarantine off: store.backend is not sqlite")
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), backendOpenTimeout)
	defer cancel()
	m, err := quarantine.Open(ctx, quarantine.Options{
		DB:        sq.DB(),
		Dir:       c.Storage.Path("quarantine"),
		Ring:      b.ring,
		Audit:     obs.audit,
		Hop:       obs.hop,
		Deliverer: quarantine.Deliver(p),
		HoldFor:   c.Quarantine.HoldFor.D(),
		Logger:    log,
		Notify:    notices,
	})
	if err != nil {
		return nil, err
	}
	// Sender control (hold) and approval (approve) mail links under
	// links.base_url/h/, served by the link server.
	if err := m.EnableActions(ctx, sq.DB(), c.Links.BaseURL); err != nil {
		return nil, err
	}
	p.Quarantine = m.Holder()
	return m, nil
}

// heldPages is m for the link server's /h/ pages; a nil m serves none.
func heldPages(m *quarantine.Manager) linkserver.HeldMail {
	if m == nil {
		return nil
	}
	return m
}

// adminQuarantine is m for the admin API; a nil m leaves its routes out.
func adminQuarantine(m *quarantine.Manager) admin.Quarantine {
	if m == nil {
		return nil
	}
	return m
}
