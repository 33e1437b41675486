package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/attachgate/attachgate/certs"
	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/expiry"
	"github.com/attachgate/attachgate/linkserver"
	"github.com/attachgate/attachgate/mailpart"
	"github.com/attachgate/attachgate/metrics"
	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/smtpd"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/users"
	"github.com/attachgate/attachgate/vault"
)

// drainTimeout bounds how long SIGTERM waits for transactions in flight.
const drainTimeout = 60 * time.Second

func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (YAML)")
	if err := fs.Parse(args); err != nil {
		return "", false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "attachgate %s: unexpected argument %q\n", name, fs.Arg(0))
		return "", false
	}
	if *path == "" {
		fmt.Fprintf(stderr, "attachgate %s: -config FILE is required\n", name)
		return "", false
	}
	return *path, true
}

func runCheckConfig(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("check-config", args, stderr)
	if !ok {
		return 2
	}
	if _, err := config.Load(path); err != nil {
		fmt.Fprintf(stderr, "attachgate: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", path)
	return 0
}

func newLogger(c *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(idKeyHandler{slog.NewJSONHandler(w, opts)})
	}
	return slog.New(idKeyHandler{slog.NewTextHandler(w, opts)})
}

func runServe(args []string, stderr io.Writer) int {
	path, ok := configFlag("serve", args, stderr)
	if !ok {
		return 2
	}
	c, err := config.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "attachgate: %v\n", err)
		return 1
	}
	log := newLogger(c, stderr)
	// Whatever the umask the daemon was started with, what it creates is
	// its own (the code asks for 0600 and 0700 too). Set here, for the
	// daemon's process only: the umask is process-wide, and tests run
	// openBackend in their own process.
	syscall.Umask(0o077)
	if err := serve(path, c, log); err != nil {
		log.Error("serve failed", "err", err)
		return 1
	}
	return 0
}

// serve runs the daemon on c, read from path (read again on SIGHUP).
func serve(path string, c *config.Config, log *slog.Logger) error {
	b, err := openBackend(c, log)
	if err != nil {
		return err
	}
	defer b.Close()

	// A crash leaves encrypted spool files whose keys died with the
	// process, and half-written blobs: both are removed before serving.
	spoolDir := c.Storage.SpoolDir
	if n, err := vault.CleanSpool(spoolDir); err != nil {
		return fmt.Errorf("clean spool: %w", err)
	} else if n > 0 {
		log.Warn("removed spool leftovers of an earlier crash", "count", n)
	}
	if n, err := b.blobs.CleanTemp(time.Hour); err != nil {
		return fmt.Errorf("clean blob temp files: %w", err)
	} else if n > 0 {
		log.Warn("removed unfinished blobs", "count", n)
	}
	if n, err := b.blobs.UseTempArea(instanceName(c)); err != nil {
		return fmt.Errorf("blob temp area: %w", err)
	} else if n > 0 {
		log.Warn("removed this instance's unfinished blobs of an earlier run", "count", n)
	}

	var cert *certsReloader
	if c.SMTP.TLS.Enabled() {
		if cert, err = loadCerts(c); err != nil {
			return err
		}
	}
	var userDB *users.DB
	if c.SMTP.Auth.UsersFile != "" {
		if userDB, err = users.Load(c.SMTP.Auth.UsersFile); err != nil {
			return err
		}
		log.Info("SMTP AUTH enabled", "users", userDB.Len(), "login", c.SMTP.Auth.AllowLogin)
	}
	hopTLS, err := nextHopTLS(c)
	if err != nil {
		return err
	}

	smtpLn, err := net.Listen("tcp", c.SMTP.Listen)
	if err != nil {
		return fmt.Errorf("smtp.listen: %w", err)
	}
	defer smtpLn.Close()
	var tlsLn net.Listener
	if c.SMTP.TLSListen != "" {
		if tlsLn, err = net.Listen("tcp", c.SMTP.TLSListen); err != nil {
			return fmt.Errorf("smtp.tls_listen: %w", err)
		}
		defer tlsLn.Close()
	}
	httpLn, err := net.Listen("tcp", c.Links.Listen)
	if err != nil {
		return fmt.Errorf("links.listen: %w", err)
	}

	// Metrics: every component gets the store, audit log and next hop
	// through observe's counting wrappers (observe.go).
	m := metrics.New(log)
	m.DiskFree(c.Storage.Dir)
	hop := relay.New(c.NextHop.Address, c.SMTP.Hostname, c.NextHop.Timeout.D(), c.NextHop.TLS, hopTLS)
	obs := observe(m, b, hop, log)

	notices, err := openNotifier(c, b, obs, hop, log)
	if err != nil {
		return err
	}
	pl := newPipeline(c, b, obs, notices, log)
	if _, isSQLite := b.raw.(*store.SQLite); isSQLite && !pl.SharedCommit() {
		log.Warn("message records and audit events are committed separately (two fsyncs per message)")
	}
	if pl.Scan, err = openScanner(c, log); err != nil {
		return err
	}
	held, err := openQuarantine(c, b, obs, pl, notices, log)
	if err != nil {
		return err
	}
	if held != nil {
		m.WatchHeld(heldCounts(held))
	}
	smtpSrv := smtpd.New(smtpd.Options{
		Hostname:                c.SMTP.Hostname,
		MaxMessageBytes:         c.SMTP.MaxMessageBytes,
		MaxRecipients:           c.SMTP.MaxRecipients,
		Trusted:                 c.SMTP.Trusted(),
		Microsoft365Networks:    c.SMTP.Microsoft365.ParsedNetworks(),
		Microsoft365Tenants:     c.SMTP.Microsoft365.Tenants(),
		ReadTimeout:             c.SMTP.ReadTimeout.D(),
		WriteTimeout:            c.SMTP.WriteTimeout.D(),
		MaxLineLength:           c.SMTP.MaxLineLength,
		MaxConnections:          c.SMTP.MaxConnections,
		MaxConnectionsPerClient: c.SMTP.MaxConnectionsPerClient,
		ReservedConnections:     c.SMTP.Reserved(),
		UntrustedIdleTimeout:    c.SMTP.UntrustedIdleTimeout.D(),
		AuthConcurrency:         c.SMTP.Auth.MaxConcurrent,
		TLSConfig:               cert.ServerConfig(),
		Users:                   userDB,
		AllowLogin:              c.SMTP.Auth.AllowLogin,
		AuthMaxFailures:         c.SMTP.Auth.MaxFailures,
		AuthFailureWindow:       c.SMTP.Auth.FailureWindow.D(),
		Hop:                     obs.hop,
		Pipeline:                pl,
		Audit:                   obs.audit,
		Logger:                  log,
	})
	links, err := linkserver.New(linkserver.Options{
		Store:          obs.store,
		Blobs:          b.blobs,
		MACKey:         b.ring.MACKey(),
		Audit:          obs.audit,
		Logger:         log,
		Location:       c.Links.Location(),
		TrustedProxies: c.Links.Proxies(),
		HTTPS:          c.Links.HTTPS(),
		Notify:         notices,
		MaxExpiry:      c.Links.MaxExpiry.D(),
		Held:           heldPages(held),
	})
	if err != nil {
		return err
	}
	defer links.Close()
	var linkCert *certs.Reloader
	if c.Links.TLS.Enabled() {
		if linkCert, err = certs.Load(c.Links.TLS.CertFile, c.Links.TLS.KeyFile); err != nil {
			return fmt.Errorf("links.tls: %w", err)
		}
	}
	httpSrv := links.HTTPServer(linkCert.ServerConfig())
	adminAPI, err := startAdminAPI(c, b, obs, adminQuarantine(held), links, log)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	janitor := &expiry.Janitor{Store: obs.store, Blobs: b.blobs, Audit: obs.audit, Logger: log,
		// A purged link's tombstone lives as long as the audit events about it.
		TombstoneTTL: time.Duration(c.Audit.RetentionDays) * 24 * time.Hour}
	go b.guard.Run(ctx)
	go runReconcile(ctx, b, log.With("component", "vault"), 10*time.Minute)
	go janitor.Run(ctx, time.Minute)
	go notices.Sender.Run(ctx)
	if held != nil {
		go held.Run(ctx) // timed release of action hold
	}
	go b.audit.RunRetention(ctx, 24*time.Hour)

	if n := c.DKIMKeys().Len(); n > 0 {
		log.Info("DKIM signing enabled", "domains", n)
	}
	(&reloader{path: path, log: log, cert: cert, linkCert: linkCert, users: userDB, ring: b.ring,
		pipeline: pl, admin: adminAPI, links: links}).watch(ctx)

	errc := make(chan error, 3)
	go func() { errc <- smtpSrv.Serve(m.Listener(smtpLn)) }()
	if tlsLn != nil {
		go func() { errc <- smtpSrv.ServeTLS(m.Listener(tlsLn)) }()
	}
	go func() {
		serveHTTP := func() error { return httpSrv.Serve(httpLn) }
		if linkCert != nil {
			serveHTTP = func() error { return httpSrv.ServeTLS(httpLn, "", "") }
		}
		if err := serveHTTP(); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
	log.Info("attachgate serving", "version", version, "smtp", smtpLn.Addr().String(),
		"links", httpLn.Addr().String(), "next_hop", c.NextHop.Address,
		"storage", mustAbs(c.Storage.Dir))

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining transactions", "deadline", drainTimeout)
	case serveErr = <-errc:
	}
	stop()
	sctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := smtpSrv.Shutdown(sctx); err != nil {
		log.Warn("smtp drain incomplete", "err", err)
	}
	if err := httpSrv.Shutdown(sctx); err != nil {
		log.Warn("http drain incomplete", "err", err)
	}
	if err := adminAPI.Shutdown(sctx); err != nil {
		log.Warn("admin drain incomplete", "err", err)
	}
	// Events queued for the next group commit (mail.relayed) go to disk
	// before the process ends.
	if f, ok := b.audit.(interface{ Flush(context.Context) error }); ok {
		if err := f.Flush(sctx); err != nil {
			log.Error("audit flush at shutdown", "err", err)
		}
	}
	log.Info("stopped")
	return serveErr
}

func mustAbs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// newPipeline builds the pipeline mail runs through: serve's, and the one
// the quarantine command releases held mail with.
func newPipeline(c *config.Config, b *backend, obs *observed, notices *notify.Service, log *slog.Logger) *pipeline.Pipeline {
	return &pipeline.Pipeline{
		Hostname:     c.SMTP.Hostname,
		SpoolDir:     c.Storage.SpoolDir,
		Store:        obs.store,
		Blobs:        b.blobs,
		Audit:        obs.audit,
		BaseURL:      c.Links.BaseURL,
		Expiry:       c.Links.DefaultExpiry.D(),
		MaxDownloads: c.Links.MaxDownloads,
		Language:     c.Links.Language,
		Location:     c.Links.Location(),
		LogSubjects:  c.Audit.LogSubjects,
		Policies:     c.PolicyEngine(),
		DKIM:         c.DKIMKeys(),
		Limits: mailpart.Limits{MaxDepth: c.SMTP.MaxMIMEDepth, MaxParts: c.SMTP.MaxMIMEParts,
			MaxHeaderBytes: c.SMTP.MaxHeaderBytes},
		Logger:  log,
		Metrics: obs.metrics,
		Notify:  notices,
	}
}
