package main

import (
	"fmt"
	"log/slog"

	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/relay"
)

// openNotifier builds the sender of the gateway's own mail: composed from
// the configured templates, queued encrypted under storage.dir/notify (one
// queue shared by the instances of a storage directory), sent through the
// next hop, audited through obs. Run its Sender in the background.
func openNotifier(c *config.Config, b *backend, obs *observed, hop relay.Hop, log *slog.Logger) (*notify.Service, error) {
	composer, err := notify.NewComposer(notify.ComposerOptions{
		Templates: c.Notify.Templates(), Hostname: c.SMTP.Hostname, From: c.Notify.From,
		Language: c.Links.Language, MarkerKey: b.ring.MACKey()})
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	sender, err := notify.NewSender(notify.SenderOptions{
		Hop:        hop,
		Audit:      obs.audit,
		Ring:       b.ring,
		Dir:        c.Storage.Path("notify"),
		ReturnPath: c.Notify.ReturnPath,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	return &notify.Service{Composer: composer, Sender: sender, Logger: log.With("component", "notify")}, nil
}
