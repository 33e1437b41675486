package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/attachgate/attachgate/admin"
	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/linkserver"
	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/quarantine"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/store/redisstore"
)

// openQuarantine opens held mail (policy actions quarantine and hold): its
// index in the SQLite database or in Redis (store.backend), its blobs
// under storage.dir/quarantine. The pipeline holds mail there and
// releases it through hop; refused recipients are bounced through notices.
func openQuarantine(c *config.Config, b *backend, obs *observed, p *pipeline.Pipeline, notices *notify.Service, log *slog.Logger) (*quarantine.Manager, error) {
	if n := c.PolicyEngine().Rules(); n > 0 {
		log.Info("policies loaded", "rules", n)
	}
	o := quarantine.Options{
		Dir:         c.Storage.Path("quarantine"),
		Ring:        b.ring,
		Audit:       obs.audit,
		Hop:         obs.hop,
		Deliverer:   quarantine.Deliver(p),
		HoldFor:     c.Quarantine.HoldFor.D(),
		MaxRetryAge: c.Quarantine.MaxRetryAge.D(),
		Retention:   c.Quarantine.Retention.D(),
		Logger:      log,
		Notify:      notices,
		Usable:      b.guard.Check,
	}
	if err := quarantineIndex(b, &o); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), backendOpenTimeout)
	defer cancel()
	m, err := quarantine.Open(ctx, o)
	if err != nil {
		return nil, err
	}
	// Sender control (hold) and approval (approve) mail links under
	// links.base_url/h/, served by the link server.
	// Their state is kept where the held mail's index is: the SQLite
	// database, or the Redis of store.backend redis (shared by instances).
	if err := enableActions(ctx, b, m, c.Links.BaseURL); err != nil {
		return nil, err
	}
	p.Quarantine = m.Holder()
	return m, nil
}

// quarantineIndex points o at the backend's index of held mail: the SQLite
// database or the Redis of store.backend.
func quarantineIndex(b *backend, o *quarantine.Options) error {
	switch st := b.raw.(type) {
	case *store.SQLite:
		o.DB = st.DB()
	case *redisstore.Store:
		o.Redis, o.RedisPrefix = st.Client(), st.KeyPrefix()
	default:
		return fmt.Errorf("quarantine: no index for store %T", b.raw)
	}
	return nil
}

// enableActions turns on m's sender control and approval on the
// backend's store.
func enableActions(ctx context.Context, b *backend, m *quarantine.Manager, baseURL string) error {
	switch st := b.raw.(type) {
	case *store.SQLite:
		return m.EnableActions(ctx, st.DB(), baseURL)
	case *redisstore.Store:
		return m.EnableActionsRedis(ctx, st.Client(), st.KeyPrefix(), baseURL)
	}
	return fmt.Errorf("quarantine: no sender control state for store %T", b.raw)
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
