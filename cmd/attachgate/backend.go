package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/store/redisstore"
	"github.com/attachgate/attachgate/vault"
)

// backendOpenTimeout bounds connecting to the metadata backend at start.
const backendOpenTimeout = 30 * time.Second

// backend is the state every subcommand opens: the key ring and the
// encrypted blobs under storage.dir (a directory several instances may
// share), metadata and the audit log in the configured store.backend.
type backend struct {
	ring  *vault.KeyRing
	blobs *vault.BlobStore
	// store and audit refuse every call while guard does (the backend is
	// unreachable or not the dataset this instance served); raw is the
	// backend itself.
	store store.Store
	audit audit.Log
	raw   store.Store
	guard *store.Guard
}

// openBackend opens everything serve needs. log receives start-up
// warnings (a Redis without persistence) and the audit log's retention
// reports.
func openBackend(c *config.Config, log *slog.Logger) (*backend, error) {
	// What an older version or another umask left is made private
	// (files 0600, directories 0700); runServe sets the umask for what the
	// daemon creates from now on.
	if err := vault.SecureDataDir(c.Storage.Dir); err != nil {
		return nil, err
	}
	ring, err := vault.OpenKeyRing(c.Storage.Path("keys"))
	if err != nil {
		return nil, err
	}
	blobs, err := vault.NewBlobStore(c.Storage.Path("blobs"), ring)
	if err != nil {
		return nil, err
	}
	blobs.SetNameDurability(nameDurability(c, log))
	if c.Store.Backend == "redis" {
		// go-redis reports dial failures on its own; route them to our log.
		redis.SetLogger(redisLogger{log: log.With("component", "redis")})
	}
	st, al, err := openMetadata(c, ring, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), backendOpenTimeout)
	defer cancel()
	gen, err := datasetGeneration(ctx, c, st, log)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("dataset generation: %w", err)
	}
	guard, err := store.NewGuard(st, gen, 5*time.Second, log)
	if err != nil {
		st.Close()
		return nil, err
	}
	guard.Probe(ctx) // a dataset lost while every instance was down refuses from the start
	return &backend{ring: ring, blobs: blobs, store: guard, audit: guardedAudit{Log: al, guard: guard},
		raw: st, guard: guard}, nil
}

func (b *backend) Close() { b.raw.Close() }

// openMetadata opens the store and the audit log of c's store.backend:
// both in the SQLite database under storage.dir, or both in Redis. A nil
// log skips the persistence check (the CLI only reads).
func openMetadata(c *config.Config, ring *vault.KeyRing, log *slog.Logger) (store.Store, audit.Log, error) {
	opts := auditOptions(c, ring)
	if log != nil {
		opts.Logger = log
	}
	switch c.Store.Backend {
	case "redis":
		ctx, cancel := context.WithTimeout(context.Background(), backendOpenTimeout)
		defer cancel()
		st, err := redisstore.Open(ctx, redisOptions(c))
		if err != nil {
			return nil, nil, fmt.Errorf("store.redis: %w", err)
		}
		if log != nil {
			warnWithoutPersistence(ctx, st, log)
		}
		al, err := audit.NewRedis(st.Client(), st.KeyPrefix(), opts)
		if err != nil {
			st.Close()
			return nil, nil, err
		}
		return st, al, nil
	default:
		if err := os.MkdirAll(c.Storage.Dir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("storage.dir %s: %w", c.Storage.Dir, err)
		}
		st, err := store.OpenSQLite(c.Storage.Path("attachgate.db"))
		if err != nil {
			return nil, nil, err
		}
		al, err := audit.NewSQLite(st.DB(), opts)
		if err != nil {
			st.Close()
			return nil, nil, err
		}
		return st, al, nil
	}
}

func redisOptions(c *config.Config) redisstore.Options {
	r := c.Store.Redis
	return redisstore.Options{
		URL:       r.URL,
		KeyPrefix: r.KeyPrefix,
		Username:  r.Username,
		Password:  r.Password,
		TLS:       r.TLS,
		Timeout:   r.Timeout.D(),
	}
}

// warnWithoutPersistence logs when Redis keeps its data in memory only:
// links would die and the audit log would lose events with a restart.
func warnWithoutPersistence(ctx context.Context, st *redisstore.Store, log *slog.Logger) {
	aof, rdb, err := st.Persistence(ctx)
	switch {
	case err != nil:
		log.Warn("could not check Redis persistence; make sure AOF (appendonly yes) is on: audit events must survive a Redis restart", "err", err)
	case !aof && !rdb:
		log.Warn("Redis has no persistence (appendonly no, no save points): links and audit events are lost when Redis restarts; set appendonly yes")
	case !aof:
		log.Warn("Redis persists by RDB snapshots only: events since the last snapshot are lost when Redis restarts; set appendonly yes")
	}
}

// redisLogger adapts go-redis's internal log lines (dial failures while
// Redis is away, mostly) to slog.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...))
}

// openAuditLog opens the audit log of the configuration at path for the
// audit subcommands; the func it returns releases the store.
func openAuditLog(path string) (audit.Log, func(), error) {
	c, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	// An export before the first serve finds an empty log, not an error.
	if err := vault.SecureDataDir(c.Storage.Dir); err != nil {
		return nil, nil, err
	}
	ring, err := vault.OpenKeyRing(c.Storage.Path("keys"))
	if err != nil {
		return nil, nil, err
	}
	st, al, err := openMetadata(c, ring, nil)
	if err != nil {
		return nil, nil, err
	}
	return al, func() { st.Close() }, nil
}

// auditOptions anchor the log outside the database: events MACed with a
// key derived from the key ring's secret, and the signed head in
// storage.dir/audit-head (shared by instances sharing storage.dir).
func auditOptions(c *config.Config, ring *vault.KeyRing) audit.Options {
	return audit.Options{Location: c.Audit.Location(), Retention: c.Audit.RetentionDays,
		MACKey: audit.AuditKey(ring.MACKey()), HeadPath: auditHeadPath(c)}
}

func auditHeadPath(c *config.Config) string { return c.Storage.Path("audit-head") }

// nameDurability picks how stored attachments' names are made durable
// (storage.name_sync): one fsync after the rename where the file system
// promises that covers the name, a directory sync elsewhere.
func nameDurability(c *config.Config, log *slog.Logger) vault.NameDurability {
	dir := c.Storage.Path("blobs")
	if c.Storage.NameSync == "directory" {
		log.Info("attachment names made durable by directory syncs", "dir", dir, "storage.name_sync", "directory")
		return vault.SyncDirectories
	}
	fstype, ok, err := vault.FileSystemKeepsNames(dir)
	switch {
	case err != nil:
		log.Warn("file system of the blob store unknown: attachment names made durable by directory syncs", "dir", dir, "err", err)
		return vault.SyncDirectories
	case !ok:
		log.Info("attachment names made durable by directory syncs", "dir", dir, "fstype", fstype)
		return vault.SyncDirectories
	}
	log.Info("attachment names made durable by one fsync after the rename", "dir", dir, "fstype", fstype)
	return vault.FsyncAfterRename
}
