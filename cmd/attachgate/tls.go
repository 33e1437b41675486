package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/attachgate/attachgate/certs"
	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/users"
	"github.com/attachgate/attachgate/vault"
)

// certsReloader is the listener certificate; nil when TLS is off.
type certsReloader = certs.Reloader

func loadCerts(c *config.Config) (*certs.Reloader, error) {
	r, err := certs.Load(c.SMTP.TLS.CertFile, c.SMTP.TLS.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("smtp.tls: %w", err)
	}
	return r, nil
}

// nextHopTLS builds the client TLS policy for next_hop.tls.
func nextHopTLS(c *config.Config) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.NextHop.ServerName,
		InsecureSkipVerify: c.NextHop.InsecureSkipVerify, // labs only, documented
	}
	if c.NextHop.CAFile != "" {
		pem, err := os.ReadFile(c.NextHop.CAFile)
		if err != nil {
			return nil, fmt.Errorf("next_hop.ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("next_hop.ca_file %s: no PEM certificates", c.NextHop.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// reloadOnHangup reloads the SMTP and link server certificates, the users
// file and the key ring's current key on SIGHUP; a failed reload keeps what was loaded
// before.
func reloadOnHangup(ctx context.Context, log *slog.Logger, r *certs.Reloader, db *users.DB, ring *vault.KeyRing, links *certs.Reloader) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if r != nil {
			if err := r.Reload(); err != nil {
				log.Error("SIGHUP: certificate not reloaded", "err", err)
			} else {
				log.Info("SIGHUP: certificate reloaded")
			}
		}
		if links != nil {
			if err := links.Reload(); err != nil {
				log.Error("SIGHUP: link server certificate not reloaded", "err", err)
			} else {
				log.Info("SIGHUP: link server certificate reloaded")
			}
		}
		if err := ring.Reload(); err != nil {
			log.Error("SIGHUP: key ring not reloaded", "err", err)
		} else {
			log.Info("SIGHUP: key ring reloaded", "current", ring.CurrentID())
		}
		if db != nil {
			if err := db.Reload(); err != nil {
				log.Error("SIGHUP: users file not reloaded", "err", err)
			} else {
				log.Info("SIGHUP: users file reloaded", "users", db.Len())
			}
		}
	}
}
