package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver (pure Go, no cgo)
)

// SQLite is the embedded Store: one database file in the data directory.
// WAL mode lets the CLI read while the daemon writes; busy_timeout makes
// writers from several connections or processes wait for each other instead
// of failing.
type SQLite struct {
	db *sql.DB
}

var _ Store = (*SQLite)(nil)

// sqliteParams configures every pooled connection. Pragmas are per
// connection, so they go in the DSN rather than a one-off Exec.
//   - _txlock=immediate: transactions take the write lock at BEGIN, so a
//     read-then-write transaction never fails with SQLITE_BUSY on upgrade
//     (busy_timeout does not help there in WAL mode).
//   - synchronous(FULL): a committed message survives power loss; we answer
//     250 only after the commit, so NORMAL's lost tail would lose links.
const sqliteParams = "_txlock=immediate" +
	"&_pragma=busy_timeout(5000)" +
	"&_pragma=foreign_keys(1)" +
	"&_pragma=journal_mode(WAL)" +
	"&_pragma=synchronous(FULL)"

// storeComponent names this package's row in schema_version; other packages
// sharing the database (audit) keep their own rows there.
const storeComponent = "store"

// storeMigrations are applied in order; index i brings the schema to
// version i+1. Append only: never edit a migration that has shipped.
var storeMigrations = []string{
	`CREATE TABLE messages (
		id          TEXT PRIMARY KEY,
		message_id  TEXT NOT NULL,
		sender      TEXT NOT NULL,
		recipients  TEXT NOT NULL, -- JSON array
		client_addr TEXT NOT NULL,
		auth_user   TEXT NOT NULL,
		created_at  INTEGER NOT NULL -- unix ns, UTC
	);
	CREATE TABLE files (
		id           TEXT PRIMARY KEY,
		message_id   TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
		name         TEXT NOT NULL,
		content_type TEXT NOT NULL,
		size         INTEGER NOT NULL,
		sha256       TEXT NOT NULL,
		key_id       TEXT NOT NULL,
		created_at   INTEGER NOT NULL,
		expires_at   INTEGER NOT NULL
	);
	CREATE INDEX files_message ON files(message_id);
	CREATE INDEX files_expires ON files(expires_at);
	CREATE TABLE links (
		id            TEXT PRIMARY KEY,
		file_id       TEXT NOT NULL REFERENCES files(id) ON DELETE CASCADE,
		token_hash    BLOB NOT NULL UNIQUE,
		created_at    INTEGER NOT NULL,
		expires_at    INTEGER NOT NULL,
		revoked_at    INTEGER, -- NULL while not revoked
		max_downloads INTEGER NOT NULL DEFAULT 0,
		downloads     INTEGER NOT NULL DEFAULT 0
	);
	CREATE INDEX links_file ON links(file_id);`,
	// 2: what pages and notices about a message need (people in the loop).
	`ALTER TABLE messages ADD COLUMN subject TEXT NOT NULL DEFAULT '';
	ALTER TABLE messages ADD COLUMN lang TEXT NOT NULL DEFAULT '';
	ALTER TABLE messages ADD COLUMN verify TEXT NOT NULL DEFAULT '';
	ALTER TABLE messages ADD COLUMN notify_sender TEXT NOT NULL DEFAULT '';
	ALTER TABLE messages ADD COLUMN page_token_hash BLOB;
	ALTER TABLE messages ADD COLUMN manage_token_hash BLOB;
	CREATE UNIQUE INDEX messages_page_token ON messages(page_token_hash) WHERE page_token_hash IS NOT NULL;
	CREATE UNIQUE INDEX messages_manage_token ON messages(manage_token_hash) WHERE manage_token_hash IS NOT NULL;`,
}

// OpenSQLite opens (creating if needed) the database at path and brings its
// schema up to date.
func OpenSQLite(path string) (*SQLite, error) {
	if path == "" {
		return nil, errors.New("open sqlite: empty path")
	}
	// The driver splits the DSN at the first '?'.
	if strings.Contains(path, "?") {
		return nil, fmt.Errorf("open sqlite %s: path must not contain '?'", path)
	}
	if err := privateDatabaseFiles(path); err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", path+"?"+sqliteParams)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// WAL gives one writer and many readers; a small pool lets reads run
	// beside a write while busy_timeout queues the writers.
	db.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)))
	db.SetMaxIdleConns(max(4, runtime.GOMAXPROCS(0)))
	if err := Migrate(context.Background(), db, storeComponent, storeMigrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := migrateTombstones(context.Background(), db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := migrateAccesses(context.Background(), db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := migrateCodes(context.Background(), db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return &SQLite{db: db}, nil
}

// DB returns the underlying database so other packages (audit) can keep
// their tables in the same file. They must version their schema through
// Migrate with their own component name.
func (s *SQLite) DB() *sql.DB { return s.db }

// Ping checks that the database answers a query.
func (s *SQLite) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("sqlite ping: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *SQLite) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close sqlite: %w", err)
	}
	return nil
}

// Migrate applies migrations[v:] for component, where v is the version
// recorded in the shared schema_version table, in one transaction. Two
// processes opening the database at once serialise on the write lock, and
// the second sees the first one's version.
func Migrate(ctx context.Context, db *sql.DB, component string, migrations []string) error {
	tx, err := db.BeginTx(ctx, nil) // immediate: see sqliteParams
	if err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		component TEXT PRIMARY KEY,
		version   INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate %s: create schema_version: %w", component, err)
	}
	var version int
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version WHERE component = ?`, component).Scan(&version)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("migrate %s: read version: %w", component, err)
	}
	if version > len(migrations) {
		return fmt.Errorf("migrate %s: database schema version %d is newer than this binary (%d)", component, version, len(migrations))
	}
	if version == len(migrations) {
		return nil
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrate %s to version %d: %w", component, i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (component, version) VALUES (?, ?)
		ON CONFLICT (component) DO UPDATE SET version = excluded.version`, component, len(migrations)); err != nil {
		return fmt.Errorf("migrate %s: record version: %w", component, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate %s: commit: %w", component, err)
	}
	return nil
}

// CreateMessage records m with its files and links in one transaction.
func (s *SQLite) CreateMessage(ctx context.Context, m Message, files []File, links []Link) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create message %s: %w", m.ID, err)
	}
	defer tx.Rollback()
	if err := insertMessage(ctx, tx, m, files, links); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create message %s: commit: %w", m.ID, err)
	}
	return nil
}

// CreateMessageTx is CreateMessage inside a transaction someone else opened
// on conn, a connection to this database: the pipeline records a message
// and its audit events with one commit (audit.SQLiteLog.RecordWith).
func (s *SQLite) CreateMessageTx(ctx context.Context, conn *sql.Conn, m Message, files []File, links []Link) error {
	return insertMessage(ctx, conn, m, files, links)
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func insertMessage(ctx context.Context, tx execer, m Message, files []File, links []Link) error {
	if err := validateMessage(m, files, links); err != nil {
		return fmt.Errorf("create message %s: %w", m.ID, err)
	}
	recipients, err := json.Marshal(nonNil(m.Recipients))
	if err != nil {
		return fmt.Errorf("create message %s: recipients: %w", m.ID, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO messages
		(id, message_id, sender, recipients, client_addr, auth_user, created_at,
		 subject, lang, verify, notify_sender, page_token_hash, manage_token_hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		m.ID, m.MessageID, m.Sender, string(recipients), m.ClientAddr, m.AuthUser, toNanos(m.CreatedAt),
		m.Subject, m.Lang, m.Verify, m.NotifySender, nullBytes(m.PageTokenHash), nullBytes(m.ManageTokenHash)); err != nil {
		return fmt.Errorf("create message %s: %w", m.ID, err)
	}
	for _, f := range files {
		if _, err := tx.ExecContext(ctx, `INSERT INTO files
			(id, message_id, name, content_type, size, sha256, key_id, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			f.ID, m.ID, f.Name, f.ContentType, f.Size, f.SHA256, f.KeyID, toNanos(f.CreatedAt), toNanos(f.ExpiresAt)); err != nil {
			return fmt.Errorf("create message %s: file %s: %w", m.ID, f.ID, err)
		}
	}
	for _, l := range links {
		if _, err := tx.ExecContext(ctx, `INSERT INTO links
			(id, file_id, token_hash, created_at, expires_at, revoked_at, max_downloads, downloads)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			l.ID, l.FileID, l.TokenHash, toNanos(l.CreatedAt), toNanos(l.ExpiresAt), nullNanos(l.RevokedAt), l.MaxDownloads, l.Downloads); err != nil {
			return fmt.Errorf("create message %s: link %s: %w", m.ID, l.ID, err)
		}
	}
	return nil
}

// validateMessage catches caller mistakes that would otherwise surface as
// opaque constraint errors or, worse, as files that never expire.
func validateMessage(m Message, files []File, links []Link) error {
	if m.ID == "" {
		return errors.New("message ID is empty")
	}
	fileIDs := make(map[string]bool, len(files))
	for _, f := range files {
		if f.ID == "" {
			return errors.New("file ID is empty")
		}
		if f.MessageID != "" && f.MessageID != m.ID {
			return fmt.Errorf("file %s belongs to message %s", f.ID, f.MessageID)
		}
		if f.ExpiresAt.IsZero() {
			return fmt.Errorf("file %s: ExpiresAt not set", f.ID)
		}
		fileIDs[f.ID] = true
	}
	for _, l := range links {
		if l.ID == "" {
			return errors.New("link ID is empty")
		}
		if !fileIDs[l.FileID] {
			return fmt.Errorf("link %s: file %q is not part of this message", l.ID, l.FileID)
		}
		if len(l.TokenHash) == 0 {
			return fmt.Errorf("link %s: TokenHash not set", l.ID)
		}
		if l.ExpiresAt.IsZero() {
			return fmt.Errorf("link %s: ExpiresAt not set", l.ID)
		}
		if l.MaxDownloads < 0 {
			return fmt.Errorf("link %s: negative MaxDownloads", l.ID)
		}
	}
	return nil
}

// DeleteMessage removes a message with its files and links and returns the
// removed files.
func (s *SQLite) DeleteMessage(ctx context.Context, id string) ([]File, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("delete message %s: %w", id, err)
	}
	defer tx.Rollback()
	files, err := queryFiles(ctx, tx, `SELECT `+fileColumns+` FROM files f WHERE f.message_id = ? ORDER BY f.id`, id)
	if err != nil {
		return nil, fmt.Errorf("delete message %s: %w", id, err)
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("delete message %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, fmt.Errorf("delete message %s: %w", id, err)
	} else if n == 0 {
		return nil, fmt.Errorf("delete message %s: %w", id, ErrNotFound)
	}
	// Files and links go by ON DELETE CASCADE.
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("delete message %s: commit: %w", id, err)
	}
	return files, nil
}

// LinkByTokenHash finds a link, with its file and message, by token hash.
func (s *SQLite) LinkByTokenHash(ctx context.Context, hash []byte) (LinkView, error) {
	v, err := s.linkView(ctx, `l.token_hash = ?`, hash)
	if err != nil {
		return LinkView{}, fmt.Errorf("link by token: %w", err)
	}
	return v, nil
}

// LinkByID finds a link, with its file and message, by link ID.
func (s *SQLite) LinkByID(ctx context.Context, id string) (LinkView, error) {
	v, err := s.linkView(ctx, `l.id = ?`, id)
	if err != nil {
		return LinkView{}, fmt.Errorf("link %s: %w", id, err)
	}
	return v, nil
}

// MessageByTokenHash finds a message by its page or manage token hash.
func (s *SQLite) MessageByTokenHash(ctx context.Context, kind MessageToken, hash []byte) (MessageView, error) {
	column := "page_token_hash"
	if kind == ManageToken {
		column = "manage_token_hash"
	}
	if len(hash) == 0 {
		return MessageView{}, fmt.Errorf("message by token: %w", ErrNotFound)
	}
	v, err := s.messageView(ctx, `m.`+column+` = ?`, hash)
	if err != nil {
		return MessageView{}, fmt.Errorf("message by token: %w", err)
	}
	return v, nil
}

// MessageByID finds a message by its ID.
func (s *SQLite) MessageByID(ctx context.Context, id string) (MessageView, error) {
	v, err := s.messageView(ctx, `m.id = ?`, id)
	if err != nil {
		return MessageView{}, fmt.Errorf("message %s: %w", id, err)
	}
	return v, nil
}

// messageView reads the message and its links in one read transaction,
// so the page never shows a half-deleted message.
func (s *SQLite) messageView(ctx context.Context, where string, arg any) (MessageView, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+linkColumns+`, `+fileColumns+`, `+messageColumns+`
		FROM messages m
		JOIN files f ON f.message_id = m.id
		JOIN links l ON l.file_id = f.id
		WHERE `+where+` ORDER BY f.id, l.id`, arg)
	if err != nil {
		return MessageView{}, err
	}
	defer rows.Close()
	var mv MessageView
	for rows.Next() {
		var v LinkView
		var recipients string
		dest := append(append(linkDest(&v.Link), fileDest(&v.File)...), messageDest(&v.Message, &recipients)...)
		if err := rows.Scan(dest...); err != nil {
			return MessageView{}, err
		}
		normaliseLink(&v.Link)
		if err := normaliseMessage(&v.Message, recipients); err != nil {
			return MessageView{}, err
		}
		mv.Message = v.Message
		mv.Links = append(mv.Links, v)
	}
	if err := rows.Err(); err != nil {
		return MessageView{}, err
	}
	if len(mv.Links) == 0 {
		return MessageView{}, ErrNotFound
	}
	return mv, nil
}

func (s *SQLite) linkView(ctx context.Context, where string, arg any) (LinkView, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+linkColumns+`, `+fileColumns+`, `+messageColumns+`
		FROM links l
		JOIN files f ON f.id = l.file_id
		JOIN messages m ON m.id = f.message_id
		WHERE `+where, arg)
	var v LinkView
	var recipients string
	dest := append(append(linkDest(&v.Link), fileDest(&v.File)...), messageDest(&v.Message, &recipients)...)
	if err := row.Scan(dest...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return LinkView{}, ErrNotFound
		}
		return LinkView{}, err
	}
	normaliseLink(&v.Link)
	if err := normaliseMessage(&v.Message, recipients); err != nil {
		return LinkView{}, err
	}
	return v, nil
}

// CountDownload increments the link's counter if it is usable at now. The
// check and the increment are one UPDATE, so concurrent downloads, even from
// other processes, cannot overrun MaxDownloads.
func (s *SQLite) CountDownload(ctx context.Context, linkID string, now time.Time) (Link, error) {
	row := s.db.QueryRowContext(ctx, `UPDATE links SET downloads = downloads + 1
		WHERE id = ? AND revoked_at IS NULL AND expires_at > ?
			AND (max_downloads = 0 OR downloads < max_downloads)
		RETURNING `+linkColumnsBare, linkID, toNanos(now))
	var l Link
	err := row.Scan(linkDest(&l)...)
	if err == nil {
		normaliseLink(&l)
		return l, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return Link{}, fmt.Errorf("count download %s: %w", linkID, err)
	}
	// Nothing updated: read the link to tell the caller why. The conditions
	// only ever become more restrictive, so this read cannot find the link
	// usable again.
	row = s.db.QueryRowContext(ctx, `SELECT `+linkColumnsBare+` FROM links WHERE id = ?`, linkID)
	if err := row.Scan(linkDest(&l)...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Link{}, fmt.Errorf("count download %s: %w", linkID, ErrNotFound)
		}
		return Link{}, fmt.Errorf("count download %s: %w", linkID, err)
	}
	normaliseLink(&l)
	return Link{}, fmt.Errorf("count download %s: %w", linkID, unusableReason(l, now))
}

// unusableReason says why l cannot be downloaded at now; revocation wins
// over expiry, expiry over the limit.
func unusableReason(l Link, now time.Time) error {
	switch {
	case !l.RevokedAt.IsZero():
		return ErrRevoked
	case !now.Before(l.ExpiresAt):
		return ErrExpired
	case l.MaxDownloads > 0 && l.Downloads >= l.MaxDownloads:
		return ErrLimit
	default:
		// Unreachable while the UPDATE and this switch agree.
		return errors.New("link usable but not counted")
	}
}

// RevokeLink marks a link revoked at now. Revoking twice keeps the first
// time and is not an error.
func (s *SQLite) RevokeLink(ctx context.Context, linkID string, now time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE links SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, toNanos(now), linkID)
	if err != nil {
		return fmt.Errorf("revoke link %s: %w", linkID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("revoke link %s: %w", linkID, err)
	} else if n > 0 {
		return nil
	}
	var exists int
	err = s.db.QueryRowContext(ctx, `SELECT 1 FROM links WHERE id = ?`, linkID).Scan(&exists)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("revoke link %s: %w", linkID, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("revoke link %s: %w", linkID, err)
	}
	return nil
}

// ExpiredFiles lists up to limit files whose ExpiresAt is before now, oldest
// first; limit <= 0 means no limit.
func (s *SQLite) ExpiredFiles(ctx context.Context, now time.Time, limit int) ([]File, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	files, err := queryFiles(ctx, s.db, `SELECT `+fileColumns+` FROM files f
		WHERE f.expires_at < ? ORDER BY f.expires_at, f.id LIMIT ?`, toNanos(now), limit)
	if err != nil {
		return nil, fmt.Errorf("expired files: %w", err)
	}
	return files, nil
}

// DeleteFile removes a file and its links. A message left without files is
// removed too: its sender and recipients are personal data kept only as
// long as its files.
func (s *SQLite) DeleteFile(ctx context.Context, id string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete file %s: %w", id, err)
	}
	defer tx.Rollback()
	var messageID string
	err = tx.QueryRowContext(ctx, `DELETE FROM files WHERE id = ? RETURNING message_id`, id).Scan(&messageID)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("delete file %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete file %s: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE id = ?
		AND NOT EXISTS (SELECT 1 FROM files WHERE message_id = ?)`, messageID, messageID); err != nil {
		return fmt.Errorf("delete file %s: orphaned message %s: %w", id, messageID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete file %s: commit: %w", id, err)
	}
	return nil
}

// Column lists and their scan destinations, kept side by side so they stay
// in the same order.
const (
	linkColumnsBare = `id, file_id, token_hash, created_at, expires_at, revoked_at, max_downloads, downloads`
	linkColumns     = `l.id, l.file_id, l.token_hash, l.created_at, l.expires_at, l.revoked_at, l.max_downloads, l.downloads`
	fileColumns     = `f.id, f.message_id, f.name, f.content_type, f.size, f.sha256, f.key_id, f.created_at, f.expires_at`
	messageColumns  = `m.id, m.message_id, m.sender, m.recipients, m.client_addr, m.auth_user, m.created_at,
		m.subject, m.lang, m.verify, m.notify_sender, m.page_token_hash, m.manage_token_hash`
)

// nanoTime scans an INTEGER unix-ns column (NULL or 0 = zero time) into a
// UTC time.Time.
type nanoTime struct{ t *time.Time }

func (n nanoTime) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*n.t = time.Time{}
	case int64:
		*n.t = fromNanos(v)
	default:
		return fmt.Errorf("time column: unexpected type %T", src)
	}
	return nil
}

func linkDest(l *Link) []any {
	return []any{&l.ID, &l.FileID, &l.TokenHash, nanoTime{&l.CreatedAt}, nanoTime{&l.ExpiresAt},
		nanoTime{&l.RevokedAt}, &l.MaxDownloads, &l.Downloads}
}

func fileDest(f *File) []any {
	return []any{&f.ID, &f.MessageID, &f.Name, &f.ContentType, &f.Size, &f.SHA256, &f.KeyID,
		nanoTime{&f.CreatedAt}, nanoTime{&f.ExpiresAt}}
}

func messageDest(m *Message, recipients *string) []any {
	return []any{&m.ID, &m.MessageID, &m.Sender, recipients, &m.ClientAddr, &m.AuthUser, nanoTime{&m.CreatedAt},
		&m.Subject, &m.Lang, &m.Verify, &m.NotifySender, &m.PageTokenHash, &m.ManageTokenHash}
}

// nullBytes stores an empty hash as NULL, which the unique indexes skip.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func normaliseLink(l *Link) {
	if len(l.TokenHash) == 0 {
		l.TokenHash = nil
	}
}

func normaliseMessage(m *Message, recipients string) error {
	if len(m.PageTokenHash) == 0 {
		m.PageTokenHash = nil
	}
	if len(m.ManageTokenHash) == 0 {
		m.ManageTokenHash = nil
	}
	if err := json.Unmarshal([]byte(recipients), &m.Recipients); err != nil {
		return fmt.Errorf("message %s: recipients: %w", m.ID, err)
	}
	return nil
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryFiles(ctx context.Context, q queryer, query string, args ...any) ([]File, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var files []File
	for rows.Next() {
		var f File
		if err := rows.Scan(fileDest(&f)...); err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, rows.Err()
}

// toNanos stores times as UTC unix nanoseconds; the zero time becomes 0 so
// it round-trips (time.Time{}.UnixNano() overflows).
func toNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nullNanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func fromNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// privateDatabaseFiles creates the database file 0600 when missing and sets
// it and its -wal and -shm files to 0600 when they exist. SQLite gives the
// -wal and -shm files the database file's mode, whatever the umask, so a
// database created 0600 keeps all three private; an older 0644 database is
// made private before it is opened.
func privateDatabaseFiles(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		if err := f.Chmod(0o600); err != nil { // the umask may have taken bits away, never added: be exact anyway
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrExist):
		return err
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if fi.Mode().IsRegular() && fi.Mode().Perm() != 0o600 {
			if err := os.Chmod(p, 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}
