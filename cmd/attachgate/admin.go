package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/attachgate/attachgate/admin"
	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/store"
)

// newAdminServer builds the admin API from the admin section of c.
func newAdminServer(c *config.Config, st store.Store, rec audit.Recorder, exp admin.AuditExporter, q admin.Quarantine, inFlight admin.DownloadsInFlight, obs *observed, log *slog.Logger) (*admin.Server, error) {
	tokens, err := adminTokens(c)
	if err != nil {
		return nil, err
	}
	opts := admin.Options{
		Tokens:         tokens,
		TrustedProxies: c.Admin.Proxies(),
		Store:          st,
		Audit:          rec,
		Export:         exp,
		Quarantine:     q,
		InFlight:       inFlight,
		Location:       c.Audit.Location(),
		Logger:         log,
	}
	if obs != nil {
		opts.Metrics = obs.metrics.Handler()
		opts.MetricsNetworks = c.Admin.MetricsNets()
		opts.Ready = obs.ready
	}
	srv, err := admin.New(opts)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	return srv, nil
}

// adminTokens converts admin.tokens for the admin package.
func adminTokens(c *config.Config) ([]admin.Token, error) {
	tokens := make([]admin.Token, 0, len(c.Admin.Tokens))
	for i := range c.Admin.Tokens {
		configured := &c.Admin.Tokens[i]
		sum, err := hex.DecodeString(configured.SHA256)
		if err != nil {
			return nil, fmt.Errorf("admin.tokens[%d].sha256: %w", i, err)
		}
		tokens = append(tokens, admin.Token{
			Name:     configured.Name,
			SHA256:   sum,
			Role:     configured.Role,
			Networks: configured.Nets(),
		})
	}
	return tokens, nil
}

// adminListener is the running admin API; a nil *adminListener is an admin
// API that is off, and its Shutdown does nothing.
type adminListener struct {
	srv *http.Server
	api *admin.Server
}

// startAdminAPI listens on admin.listen and serves the admin API there. It
// stays off (nil, nil) when admin.listen is empty, or when neither
// admin.tokens nor admin.metrics_networks are configured: a listener that
// can only refuse would be attack surface, and the default address would
// make every daemon on a host compete for it.
func startAdminAPI(c *config.Config, b *backend, obs *observed, q admin.Quarantine, inFlight admin.DownloadsInFlight, log *slog.Logger) (*adminListener, error) {
	if c.Admin.Listen == "" {
		log.Info("admin API off: admin.listen is empty")
		return nil, nil
	}
	if len(c.Admin.Tokens) == 0 && len(c.Admin.MetricsNetworks) == 0 {
		log.Info("admin API off: no admin.tokens or admin.metrics_networks configured")
		return nil, nil
	}
	api, err := newAdminServer(c, obs.store, obs.audit, b.audit, q, inFlight, obs, log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", c.Admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	srv := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// No ReadTimeout or WriteTimeout: an export of 90 days or a CPU
		// profile may stream for minutes, and a ReadTimeout would cancel the
		// request's context once it passes.
	}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin API stopped serving", "err", err)
		}
	}()
	log.Info("admin API listening", "addr", ln.Addr().String(), "tokens", len(c.Admin.Tokens))
	return &adminListener{srv: srv, api: api}, nil
}

// Shutdown waits for admin calls in flight until ctx ends, then cuts the
// remaining ones (a long export must not hold the daemon).
func (a *adminListener) Shutdown(ctx context.Context) error {
	if a == nil {
		return nil
	}
	if err := a.srv.Shutdown(ctx); err != nil {
		a.srv.Close()
		return fmt.Errorf("admin API shutdown: %w", err)
	}
	return nil
}
