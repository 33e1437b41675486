package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/attachgate/attachgate/certs"
	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/linkserver"
	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/users"
	"github.com/attachgate/attachgate/vault"
)

// reloader applies SIGHUP: it reads the configuration file again and
// swaps what can change while mail flows — the policies, the DKIM keys,
// the admin tokens, metrics networks and trusted proxies, the link
// server's trusted proxies — and reloads the files named there: the SMTP and link
// server certificates, the users file and the key ring. Each part that fails keeps
// what was loaded before; a configuration file that does not validate
// changes none of the configuration's parts. Listeners, storage and the
// next hop need a restart.
type reloader struct {
	path     string
	log      *slog.Logger
	cert     *certs.Reloader // nil: TLS off
	linkCert *certs.Reloader // nil: links.tls off
	users    *users.DB       // nil: AUTH off
	ring     *vault.KeyRing
	pipeline *pipeline.Pipeline
	admin    *adminListener // nil: admin API off
	links    *linkserver.Server
}

// watch starts reloading on SIGHUP. The signal is caught from the moment
// watch returns (the default action of SIGHUP ends the process).
func (r *reloader) watch(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go r.run(ctx, hup)
}

func (r *reloader) run(ctx context.Context, hup chan os.Signal) {
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.reload()
		}
	}
}

func (r *reloader) reload() {
	log := r.log
	if c, err := config.Load(r.path); err != nil {
		log.Error("SIGHUP: configuration not reloaded, the running one stays", "err", err)
	} else {
		r.pipeline.Reload(pipeline.Settings{Policies: c.PolicyEngine(), DKIM: c.DKIMKeys()})
		log.Info("SIGHUP: policies and DKIM keys reloaded", "rules", c.PolicyEngine().Rules(),
			"dkim_domains", c.DKIMKeys().Len())
		r.reloadAdmin(c)
		if err := r.links.SetTrustedProxies(c.Links.Proxies()); err != nil {
			log.Error("SIGHUP: links.trusted_proxies not reloaded", "err", err)
		} else {
			log.Info("SIGHUP: links.trusted_proxies reloaded", "proxies", len(c.Links.Proxies()))
		}
	}
	if r.cert != nil {
		if err := r.cert.Reload(); err != nil {
			log.Error("SIGHUP: certificate not reloaded", "err", err)
		} else {
			log.Info("SIGHUP: certificate reloaded")
		}
	}
	if r.linkCert != nil {
		if err := r.linkCert.Reload(); err != nil {
			log.Error("SIGHUP: link server certificate not reloaded", "err", err)
		} else {
			log.Info("SIGHUP: link server certificate reloaded")
		}
	}
	if err := r.ring.Reload(); err != nil {
		log.Error("SIGHUP: key ring not reloaded", "err", err)
	} else {
		log.Info("SIGHUP: key ring reloaded", "current", r.ring.CurrentID())
	}
	if r.users != nil {
		if err := r.users.Reload(); err != nil {
			log.Error("SIGHUP: users file not reloaded", "err", err)
		} else {
			log.Info("SIGHUP: users file reloaded", "users", r.users.Len())
		}
	}
}

func (r *reloader) reloadAdmin(c *config.Config) {
	if r.admin == nil {
		if (len(c.Admin.Tokens) > 0 || len(c.Admin.MetricsNetworks) > 0) && c.Admin.Listen != "" {
			r.log.Warn("SIGHUP: admin.tokens or admin.metrics_networks configured but the admin API was off at start: restart to turn it on")
		}
		return
	}
	tokens, err := adminTokens(c)
	if err == nil {
		err = r.admin.api.SetTokens(tokens)
	}
	if err != nil {
		r.log.Error("SIGHUP: admin tokens not reloaded", "err", err)
	} else {
		r.log.Info("SIGHUP: admin tokens reloaded", "tokens", len(tokens))
	}
	nets := c.Admin.MetricsNets()
	if err := r.admin.api.SetMetricsNetworks(nets); err != nil {
		r.log.Error("SIGHUP: admin.metrics_networks not reloaded", "err", err)
	} else {
		r.log.Info("SIGHUP: admin.metrics_networks reloaded", "networks", len(nets))
	}
	proxies := c.Admin.Proxies()
	if err := r.admin.api.SetTrustedProxies(proxies); err != nil {
		r.log.Error("SIGHUP: admin.trusted_proxies not reloaded", "err", err)
		return
	}
	r.log.Info("SIGHUP: admin.trusted_proxies reloaded", "proxies", len(proxies))
}
