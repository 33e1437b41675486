// Package quarantine owns held mail: durable encrypted storage, release,
// deletion, timed release.
//
// A message a policy holds (action quarantine or hold) is stored whole as
// one encrypted blob in its own blob store (storage.dir/quarantine, id =
// attachgate's message ID, encrypted to the key ring like every attachment:
// its plaintext never touches the disk) and indexed in the table
// quarantine_items of the SQLite database. Only when both are durable, and
// mail.held is in the audit log, does the SMTP client get its 250.
//
// The pipeline holds messages here through Manager.Holder; release calls
// the pipeline back (Deliver): the message runs through the same stages as
// any other (policies' per-part actions, attachment storage with links
// made at release time, rewrite) and goes out through a fresh next-hop
// session; only when the next hop
// accepted it is the item removed. On any failure the item stays held and
// the error is reported (and recorded). Held items (action hold) are
// released by Run once their release_at has passed; quarantined ones only
// by an admin. Delete removes the index record and the blob.
//
// actions.go adds the people in the loop: the sender of a held message
// can cancel it or send it at once, and a message held for approval
// (action approve) is released or rejected by one of its approvers, or
// rejected when nobody decides in time; each through single-use links
// the link server serves.
package quarantine

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

// Errors of Release and Delete; test them with errors.Is.
var (
	// ErrNotFound: no held item has this ID.
	ErrNotFound = errors.New("quarantine: no such held message")
	// ErrBusy: the item is being held, released or deleted right now.
	ErrBusy = errors.New("quarantine: held message is busy (being released or deleted)")
	// ErrUnaudited: the action was carried out, but its audit event could
	// not be recorded.
	ErrUnaudited = errors.New("quarantine: done, but the audit event could not be recorded")
)

// DeliveryError is a release the next hop refused or could not take; the
// item stays held. Op is "connect", "MAIL FROM", "RCPT TO <addr>", "DATA",
// ...; Err is an *smtp.SMTPError when the next hop answered.
type DeliveryError = relay.Error

// Item is one held message.
type Item struct {
	ID         string // attachgate's message ID; also the blob ID
	HeaderID   string // the mail's Message-ID header
	From       string
	To         []string
	ClientAddr string
	Helo       string
	AuthUser   string
	TLS        bool // arrived over TLS
	UTF8       bool // MAIL FROM carried SMTPUTF8: the release asks for it too
	Size       int64
	Action     policies.Action // policies.Hold or policies.Quarantine
	Rule       string          // the policy rule that held it
	HeldAt     time.Time
	ReleaseAt  time.Time // when Run releases it (hold); zero for quarantine
	// HoldFor is the holding rule's hold_for when Hold is called (0: the
	// Manager's default); ReleaseAt is what is kept.
	HoldFor time.Duration
	KeyID   string // key ring entry the blob is encrypted to
	SHA256  string // of the held message
	// Attempts counts failed releases; LastError is the latest failure.
	Attempts      int
	LastError     string
	LastAttemptAt time.Time
}

// HeldReply is the reply text (after the code 250) a held message gets.
func HeldReply(id string) string { return "2.0.0 Held for review (id " + id + ")" }

// Source reopens a message from its start.
type Source interface {
	Open() (io.ReadCloser, error)
}

// Deliverer sends a held message on: Deliver(pipeline) is the real one.
type Deliverer interface {
	// Deliver runs the message read from msg through the pipeline (links
	// made now) and sends it on hop, where MAIL and every RCPT have been
	// accepted; it returns the next hop's final reply. It records the
	// files, links and mail.relayed in the audit log with actor. On error
	// nothing of the message stays stored; a refusal or failure of the
	// next hop is a *DeliveryError.
	Deliver(ctx context.Context, it Item, msg Source, hop relay.Session, actor string) (reply string, err error)
}

// Options configures a Manager.
type Options struct {
	DB   *sql.DB        // the attachgate SQLite database (store.SQLite.DB)
	Dir  string         // blob directory of held messages: storage.dir/quarantine
	Ring *vault.KeyRing // encrypts the held messages
	// Audit records mail.held, mail.released, mail.deleted, mail.deferred.
	Audit audit.Recorder
	// Hop and Deliverer release messages; both are needed for Release.
	Hop       relay.Hop
	Deliverer Deliverer
	// HoldFor is how long action hold keeps a message; 0 means 1h.
	HoldFor time.Duration
	// Interval is the longest Run sleeps between looks for due items; 0
	// means 30 s. Run also wakes when the next item is due.
	Interval time.Duration
	Now      func() time.Time
	// Logger is named "component=quarantine" here.
	Logger *slog.Logger
	// Notify tells senders (DSNs, hold notices); nil tells nobody.
	Notify *notify.Service
}

const (
	defaultHoldFor  = time.Hour
	defaultInterval = 30 * time.Second
	// minWait keeps Run from spinning on an item that is due but busy.
	minWait = 500 * time.Millisecond
	// maxBackoff bounds the delay after failed releases of a held item.
	maxBackoff = time.Hour
	// maxErrorLen bounds last_error.
	maxErrorLen = 1000
	// dbTimeout bounds one bookkeeping call that must not be cancelled
	// half-way (after the next hop accepted).
	dbTimeout = 30 * time.Second
)

// Manager keeps held messages. It is safe for concurrent use.
type Manager struct {
	notify    *notify.Service
	db        *sql.DB
	blobs     *vault.BlobStore
	dir       string
	audit     audit.Recorder
	hop       relay.Hop
	deliverer Deliverer
	holdFor   time.Duration
	interval  time.Duration
	now       func() time.Time
	log       *slog.Logger

	mu   sync.Mutex
	busy map[string]bool
	wake chan struct{}

	acts *actions // sender control and approval (actions.go); nil: off
}

// component names the quarantine's schema in schema_version.
const component = "quarantine"

// migrations of the quarantine index; append only.
var migrations = []string{
	`CREATE TABLE quarantine_items (
		id              TEXT PRIMARY KEY,
		header_id       TEXT NOT NULL,
		sender          TEXT NOT NULL,
		recipients      TEXT NOT NULL, -- JSON array
		client_addr     TEXT NOT NULL,
		helo            TEXT NOT NULL,
		auth_user       TEXT NOT NULL,
		tls             INTEGER NOT NULL,
		smtputf8        INTEGER NOT NULL,
		size            INTEGER NOT NULL,
		action          TEXT NOT NULL, -- hold or quarantine
		rule            TEXT NOT NULL,
		held_at         INTEGER NOT NULL, -- unix ns, UTC
		release_at      INTEGER,          -- NULL for quarantine
		key_id          TEXT NOT NULL,
		sha256          TEXT NOT NULL,
		attempts        INTEGER NOT NULL DEFAULT 0,
		last_error      TEXT NOT NULL DEFAULT '',
		last_attempt_at INTEGER
	);
	CREATE INDEX quarantine_items_release ON quarantine_items(release_at);`,
	// The list order, for paging (Page).
	`CREATE INDEX quarantine_items_held ON quarantine_items(held_at, id);`,
}

// Open brings the quarantine index up to date, opens the blob store and
// removes blobs without an index record (a crash between storing the blob
// and recording it, or during a deletion). Call it before serving.
func Open(ctx context.Context, o Options) (*Manager, error) {
	switch {
	case o.DB == nil:
		return nil, errors.New("quarantine: Options.DB is required")
	case o.Dir == "":
		return nil, errors.New("quarantine: Options.Dir is required")
	case o.Ring == nil:
		return nil, errors.New("quarantine: Options.Ring is required")
	case o.Audit == nil:
		return nil, errors.New("quarantine: Options.Audit is required")
	}
	if err := store.Migrate(ctx, o.DB, component, migrations); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	blobs, err := vault.NewBlobStore(o.Dir, o.Ring)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	m := &Manager{db: o.DB, blobs: blobs, dir: o.Dir, audit: o.Audit, hop: o.Hop, deliverer: o.Deliverer,
		holdFor: o.HoldFor, interval: o.Interval, now: o.Now, log: o.Logger, notify: o.Notify,
		busy: map[string]bool{}, wake: make(chan struct{}, 1)}
	if m.holdFor <= 0 {
		m.holdFor = defaultHoldFor
	}
	if m.interval <= 0 {
		m.interval = defaultInterval
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.log = m.log.With("component", "quarantine")
	if _, err := blobs.CleanTemp(0); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	if err := m.removeOrphans(ctx); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	return m, nil
}

// HoldFor is how long action hold keeps a message.
func (m *Manager) HoldFor() time.Duration { return m.holdFor }

// removeOrphans deletes blobs that no index record names.
func (m *Manager) removeOrphans(ctx context.Context) error {
	var orphans []string
	err := filepath.WalkDir(m.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "tmp" && filepath.Dir(p) == filepath.Clean(m.dir) {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(d.Name(), ".age") {
			return nil
		}
		id := strings.TrimSuffix(d.Name(), ".age")
		if _, err := m.Get(ctx, id); errors.Is(err, ErrNotFound) {
			orphans = append(orphans, id)
		} else if err != nil {
			return err
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("look for orphaned blobs: %w", err)
	}
	for _, id := range orphans {
		if err := m.blobs.Delete(id); err != nil {
			return err
		}
	}
	if len(orphans) > 0 {
		m.log.Warn("quarantine: removed blobs without an index record (earlier crash)", "count", len(orphans))
	}
	return nil
}

// claim marks id busy; false when it already is.
func (m *Manager) claim(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.busy[id] {
		return false
	}
	m.busy[id] = true
	return true
}

func (m *Manager) unclaim(id string) {
	m.mu.Lock()
	delete(m.busy, id)
	m.mu.Unlock()
}

// Hold stores the message read from msg under it.ID, encrypted, records it
// in the index and the audit log (mail.held) and returns the item as
// stored. it.Action must be policies.Hold or policies.Quarantine; HeldAt,
// ReleaseAt, KeyID and SHA256 are set here. When Hold returns nil the
// message is durable; on error nothing of it is left.
func (m *Manager) Hold(ctx context.Context, it Item, msg io.Reader) (Item, error) {
	if !it.Action.Held() {
		return Item{}, fmt.Errorf("quarantine: hold %s: action %q does not hold", it.ID, it.Action)
	}
	if !m.claim(it.ID) {
		return Item{}, fmt.Errorf("hold %s: %w", it.ID, ErrBusy)
	}
	defer m.unclaim(it.ID)
	it.Attempts, it.LastError, it.LastAttemptAt = 0, "", time.Time{}
	info, err := m.blobs.Put(it.ID, msg)
	if err != nil {
		return Item{}, fmt.Errorf("quarantine: hold %s: %w", it.ID, err)
	}
	// Held at the end of storing, just before the record is written: the
	// list is paged in held-time order, and a message that took long to
	// store must not sort before ones listed meanwhile.
	now := m.now()
	it.HeldAt, it.ReleaseAt = now, time.Time{}
	if it.Action == policies.Hold {
		holdFor := it.HoldFor
		if holdFor <= 0 {
			holdFor = m.holdFor
		}
		it.ReleaseAt = now.Add(holdFor)
	}
	it.KeyID, it.SHA256, it.Size = info.KeyID, info.SHA256, info.Size
	if err := m.insert(ctx, it); err != nil {
		m.deleteBlob(it.ID)
		return Item{}, err
	}
	e := m.event(audit.TypeMailHeld, "smtp", it)
	e.ClientAddr, e.Helo, e.AuthUser = it.ClientAddr, it.Helo, it.AuthUser
	e.Reason = it.Rule
	e.Reply = "250 " + HeldReply(it.ID)
	e.Detail = "action=" + string(it.Action)
	if !it.ReleaseAt.IsZero() {
		e.Detail += " release_at=" + it.ReleaseAt.Format(time.RFC3339)
	}
	if err := m.audit.Record(ctx, e); err != nil {
		// Not on record: not held. The client gets a 4xx and retries.
		m.remove(it.ID)
		return Item{}, fmt.Errorf("quarantine: hold %s: audit %s: %w", it.ID, e.Type, err)
	}
	m.log.Info("quarantine: message held", "msg", it.ID, "action", it.Action, "rule", it.Rule,
		"from", it.From, "rcpts", len(it.To), "size", it.Size, "release_at", it.ReleaseAt)
	if it.Action == policies.Hold {
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
	return it, nil
}

// event starts an audit event about it.
func (m *Manager) event(typ audit.EventType, actor string, it Item) audit.Event {
	return audit.Event{Type: typ, Actor: actor, MessageID: it.ID, HeaderID: it.HeaderID,
		Sender: it.From, Recipients: it.To, Size: it.Size}
}

// Result is a carried out release or deletion.
type Result struct {
	Item  Item
	At    time.Time
	Reply string // the next hop's final reply (release), e.g. "250 2.0.0 Ok: queued as X"
}

// ReasonAdmin and ReasonHoldExpired are the Reason of mail.released.
const (
	ReasonAdmin       = "admin"
	ReasonHoldExpired = "hold expired"
)

// Release sends the held message id on and removes it from the quarantine.
// actor names who releases ("admin:<token>", or audit.ActorSystem for
// timed release). On a *DeliveryError or any other failure the item stays
// held, its failure is recorded (mail.deferred) and, for a held item, its
// next automatic attempt is put back. An error wrapping ErrUnaudited
// comes with a Result: the message was released.
func (m *Manager) Release(ctx context.Context, id, actor string) (Result, error) {
	if m.hop == nil || m.deliverer == nil {
		return Result{}, errors.New("quarantine: release needs Options.Hop and Options.Deliverer")
	}
	if !m.claim(id) {
		return Result{}, fmt.Errorf("release %s: %w", id, ErrBusy)
	}
	defer m.unclaim(id)
	it, err := m.Get(ctx, id)
	if err != nil {
		return Result{}, err
	}
	reply, err := m.deliver(ctx, it, actor)
	if err != nil {
		m.failed(it, actor, err)
		return Result{Item: it}, err
	}
	// The next hop has it now: nothing may cancel the bookkeeping.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	res := Result{Item: it, At: m.now(), Reply: "250 " + reply}
	if err := m.deleteRecord(bctx, id); err != nil {
		// It would be released again: say so loudly.
		m.log.Error("quarantine: released, but removing the index record failed; it may be released twice", "msg", id, "err", err)
		return res, fmt.Errorf("quarantine: released %s, but removing its record failed: %w", id, err)
	}
	m.deleteBlob(id)
	reason := releaseReason(actor)
	e := m.event(audit.TypeMailReleased, actor, it)
	e.ClientAddr = it.ClientAddr
	e.Reason = reason
	e.Reply = res.Reply
	e.Detail = "action=" + string(it.Action) + " rule=" + it.Rule
	m.log.Info("quarantine: message released", "msg", id, "actor", actor, "reply", reply)
	if err := m.audit.Record(bctx, e); err != nil {
		m.log.Error("quarantine: audit mail.released failed", "msg", id, "err", err)
		return res, fmt.Errorf("%w: %s: %v", ErrUnaudited, e.Type, err)
	}
	return res, nil
}

// deliver opens a next-hop session, passes MAIL and every RCPT and hands
// the session to the Deliverer. Every recipient must be accepted: a
// release is all or nothing, so no recipient silently misses the mail.
func (m *Manager) deliver(ctx context.Context, it Item, actor string) (string, error) {
	sess, err := m.hop.Open(ctx)
	if err != nil {
		return "", &DeliveryError{Op: "connect", Err: err}
	}
	defer sess.Close()
	var opts *smtp.MailOptions
	if it.UTF8 {
		opts = &smtp.MailOptions{UTF8: true}
	}
	if err := sess.Mail(it.From, opts); err != nil {
		return "", &DeliveryError{Op: "MAIL FROM", Err: err}
	}
	for _, rcpt := range it.To {
		if err := sess.Rcpt(rcpt, nil); err != nil {
			sess.Reset()
			return "", &DeliveryError{Op: "RCPT TO <" + rcpt + ">", Err: err}
		}
	}
	src := blobSource{blobs: m.blobs, id: it.ID, keyID: it.KeyID}
	return m.deliverer.Deliver(ctx, it, src, sess, actor)
}

// Deliver is the Deliverer that runs held messages through p.
func Deliver(p *pipeline.Pipeline) Deliverer { return pipelineDeliverer{p} }

type pipelineDeliverer struct{ p *pipeline.Pipeline }

func (d pipelineDeliverer) Deliver(ctx context.Context, it Item, msg Source, hop relay.Session, actor string) (string, error) {
	reply, err := d.p.Release(ctx, pipeline.Released{ID: it.ID, Env: envelope(it), Size: it.Size,
		ReceivedAt: it.HeldAt, Actor: actor, Source: msg}, hop)
	var re *relay.Error
	var se *smtp.SMTPError
	if err != nil && !errors.As(err, &re) && errors.As(err, &se) {
		// The next hop refused the message at the end of DATA.
		return "", &DeliveryError{Op: "DATA", Err: se}
	}
	return reply, err
}

func envelope(it Item) pipeline.Envelope {
	return pipeline.Envelope{From: it.From, To: it.To, ClientAddr: it.ClientAddr, Helo: it.Helo,
		AuthUser: it.AuthUser, TLS: it.TLS, UTF8: it.UTF8}
}

// Holder is m as the pipeline's quarantine: it holds what a policy holds.
func (m *Manager) Holder() pipeline.Holder { return holder{m} }

type holder struct{ m *Manager }

func (h holder) Hold(ctx context.Context, held pipeline.Held, msg io.Reader) (string, error) {
	e := held.Env
	prep, err := h.m.beforeHold(ctx, held) // approval state (actions.go)
	if err != nil {
		return "", err
	}
	it, err := h.m.Hold(ctx, Item{ID: held.ID, HeaderID: held.HeaderID, From: e.From, To: e.To,
		ClientAddr: e.ClientAddr, Helo: e.Helo, AuthUser: e.AuthUser, TLS: e.TLS, UTF8: e.UTF8,
		Size: held.Size, Action: held.Action, Rule: held.Rule, HoldFor: held.HoldFor}, msg)
	if err != nil {
		h.m.abandonFlow(held.ID)
		return "", err
	}
	h.m.afterHold(ctx, it, held, prep) // sender notice or approval requests
	return HeldReply(it.ID), nil
}

type blobSource struct {
	blobs     *vault.BlobStore
	id, keyID string
}

func (s blobSource) Open() (io.ReadCloser, error) { return s.blobs.Open(s.id, s.keyID) }

// failed records a failed release: in the index (attempts, last error, and
// for a held item the next attempt after a back-off) and in the audit log.
func (m *Manager) failed(it Item, actor string, cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	now := m.now()
	it.Attempts++
	msg := cause.Error()
	if len(msg) > maxErrorLen {
		msg = msg[:maxErrorLen]
	}
	var releaseAt any
	if it.Action == policies.Hold {
		next := now.Add(backoff(it.Attempts))
		if next.Before(it.ReleaseAt) {
			next = it.ReleaseAt
		}
		releaseAt = next.UnixNano()
	}
	if _, err := m.db.ExecContext(ctx, `UPDATE quarantine_items
		SET attempts = ?, last_error = ?, last_attempt_at = ?, release_at = ? WHERE id = ?`,
		it.Attempts, msg, now.UnixNano(), releaseAt, it.ID); err != nil {
		m.log.Error("quarantine: record failed release", "msg", it.ID, "err", err)
	}
	e := m.event(audit.TypeMailDeferred, actor, it)
	e.ClientAddr = it.ClientAddr
	e.Reason = "release failed"
	var se *smtp.SMTPError
	if errors.As(cause, &se) {
		e.Reply = fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
	}
	e.Detail = msg
	m.log.Warn("quarantine: release failed; the message stays held", "msg", it.ID, "actor", actor,
		"attempts", it.Attempts, "err", cause)
	if err := m.audit.Record(ctx, e); err != nil {
		m.log.Error("quarantine: audit failed release", "msg", it.ID, "err", err)
	}
}

// backoff is the delay before the next automatic attempt after n failures:
// 30 s, 1 min, 2 min, ... up to an hour.
func backoff(n int) time.Duration {
	d := 30 * time.Second
	for i := 1; i < n && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// Delete removes the held message id, index record and blob, and records
// mail.deleted with actor. An error wrapping ErrUnaudited comes with a
// Result: the message was deleted.
func (m *Manager) Delete(ctx context.Context, id, actor string) (Result, error) {
	if !m.claim(id) {
		return Result{}, fmt.Errorf("delete %s: %w", id, ErrBusy)
	}
	defer m.unclaim(id)
	it, err := m.Get(ctx, id)
	if err != nil {
		return Result{}, err
	}
	if err := m.deleteRecord(ctx, id); err != nil {
		return Result{}, err
	}
	m.deleteBlob(id)
	res := Result{Item: it, At: m.now()}
	e := m.event(audit.TypeMailDeleted, actor, it)
	e.ClientAddr = it.ClientAddr
	e.Reason = deleteReason(actor)
	e.Detail = "action=" + string(it.Action) + " rule=" + it.Rule
	m.log.Info("quarantine: message deleted", "msg", id, "actor", actor)
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	if err := m.audit.Record(actx, e); err != nil {
		m.log.Error("quarantine: audit mail.deleted failed", "msg", id, "err", err)
		return res, fmt.Errorf("%w: %s: %v", ErrUnaudited, e.Type, err)
	}
	return res, nil
}

// remove deletes record and blob without an event (a hold that failed).
func (m *Manager) remove(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	if err := m.deleteRecord(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
		m.log.Error("quarantine: remove record", "msg", id, "err", err)
	}
	m.deleteBlob(id)
}

func (m *Manager) deleteBlob(id string) {
	if err := m.blobs.Delete(id); err != nil {
		// Removed at the next start as an orphan.
		m.log.Error("quarantine: delete blob", "msg", id, "err", err)
	}
}

// ReleaseDue releases every held item whose release_at has passed and
// returns how many went out. Items busy with an admin call are skipped;
// failures stay held (with a back-off) and are logged.
func (m *Manager) ReleaseDue(ctx context.Context) (int, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT id FROM quarantine_items
		WHERE release_at IS NOT NULL AND release_at <= ? ORDER BY release_at, id`, m.now().UnixNano())
	if err != nil {
		return 0, fmt.Errorf("quarantine: due items: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("quarantine: due items: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("quarantine: due items: %w", err)
	}
	released := 0
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		_, err := m.Release(ctx, id, audit.ActorSystem)
		switch {
		case err == nil || errors.Is(err, ErrUnaudited):
			released++
		case errors.Is(err, ErrBusy), errors.Is(err, ErrNotFound):
		default:
			// failed() logged and recorded it.
		}
	}
	return released, nil
}

// Run releases due held items at start, whenever the next one is due, and
// at least every Options.Interval, until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	go m.runActions(ctx) // approval deadlines (actions.go)
	for {
		if _, err := m.ReleaseDue(ctx); err != nil {
			m.log.Error("quarantine: timed release", "err", err)
		}
		wait := m.interval
		if next, ok, err := m.nextDue(ctx); err == nil && ok {
			wait = min(wait, max(next.Sub(m.now()), minWait))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-m.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// nextDue returns the earliest release_at.
func (m *Manager) nextDue(ctx context.Context) (time.Time, bool, error) {
	var ns sql.NullInt64
	err := m.db.QueryRowContext(ctx, `SELECT MIN(release_at) FROM quarantine_items WHERE release_at IS NOT NULL`).Scan(&ns)
	if err != nil || !ns.Valid {
		return time.Time{}, false, err
	}
	return time.Unix(0, ns.Int64), true, nil
}

const columns = `id, header_id, sender, recipients, client_addr, helo, auth_user, tls, smtputf8, size,
	action, rule, held_at, release_at, key_id, sha256, attempts, last_error, last_attempt_at`

func (m *Manager) insert(ctx context.Context, it Item) error {
	rcpts, err := json.Marshal(nonNil(it.To))
	if err != nil {
		return fmt.Errorf("quarantine: hold %s: %w", it.ID, err)
	}
	_, err = m.db.ExecContext(ctx, `INSERT INTO quarantine_items (`+columns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		it.ID, it.HeaderID, it.From, string(rcpts), it.ClientAddr, it.Helo, it.AuthUser, it.TLS, it.UTF8, it.Size,
		string(it.Action), it.Rule, it.HeldAt.UnixNano(), nullNanos(it.ReleaseAt), it.KeyID, it.SHA256,
		it.Attempts, it.LastError, nullNanos(it.LastAttemptAt))
	if err != nil {
		return fmt.Errorf("quarantine: hold %s: record: %w", it.ID, err)
	}
	return nil
}

func (m *Manager) deleteRecord(ctx context.Context, id string) error {
	res, err := m.db.ExecContext(ctx, `DELETE FROM quarantine_items WHERE id = ?`, id)
	if err != nil {
		return fmt.Errorf("quarantine: delete %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("delete %s: %w", id, ErrNotFound)
	}
	return nil
}

// Get returns the held item id, or ErrNotFound.
func (m *Manager) Get(ctx context.Context, id string) (Item, error) {
	row := m.db.QueryRowContext(ctx, `SELECT `+columns+` FROM quarantine_items WHERE id = ?`, id)
	it, err := scanItem(row.Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return Item{}, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Item{}, fmt.Errorf("quarantine: get %s: %w", id, err)
	}
	return it, nil
}

// List returns every held item, oldest first.
func (m *Manager) List(ctx context.Context) ([]Item, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT `+columns+` FROM quarantine_items ORDER BY held_at, id`)
	if err != nil {
		return nil, fmt.Errorf("quarantine: list: %w", err)
	}
	defer rows.Close()
	items := []Item{}
	for rows.Next() {
		it, err := scanItem(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("quarantine: list: %w", err)
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("quarantine: list: %w", err)
	}
	return items, nil
}

// Cursor is a position in the list order (held time, then ID): a page
// continues after it. The zero Cursor is the start of the list. A message
// held after a page was read sorts after it (it is held later), so a
// client paging with cursors sees every message held at the start exactly
// once and newly held ones on later pages; released or deleted ones
// simply drop out.
type Cursor struct {
	HeldAt time.Time
	ID     string
}

// CursorOf is the position of it: the next page starts after it.
func CursorOf(it Item) Cursor { return Cursor{HeldAt: it.HeldAt, ID: it.ID} }

// maxCursorID bounds the ID in a cursor (held IDs are 36-byte UUIDs).
const maxCursorID = 64

// String is the opaque cursor token: base64url of "<held_at unix ns>.<id>".
func (c Cursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.HeldAt.UnixNano(), 10) + "." + c.ID))
}

// ParseCursor reads a token made by Cursor.String.
func ParseCursor(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, errors.New("not a cursor of this list")
	}
	ns, id, ok := strings.Cut(string(raw), ".")
	if !ok || id == "" || len(id) > maxCursorID || !utf8.ValidString(id) {
		return Cursor{}, errors.New("not a cursor of this list")
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return Cursor{}, errors.New("not a cursor of this list")
	}
	return Cursor{HeldAt: time.Unix(0, n).UTC(), ID: id}, nil
}

// Page returns up to limit held items after the cursor after, oldest first
// (held time, then ID), and whether more follow the last one. limit must
// be positive.
func (m *Manager) Page(ctx context.Context, after Cursor, limit int) (items []Item, more bool, err error) {
	if limit <= 0 {
		return nil, false, fmt.Errorf("quarantine: page: limit %d, want > 0", limit)
	}
	var rows *sql.Rows
	if after.ID == "" {
		rows, err = m.db.QueryContext(ctx, `SELECT `+columns+` FROM quarantine_items
			ORDER BY held_at, id LIMIT ?`, limit+1)
	} else {
		rows, err = m.db.QueryContext(ctx, `SELECT `+columns+` FROM quarantine_items
			WHERE (held_at, id) > (?, ?) ORDER BY held_at, id LIMIT ?`, after.HeldAt.UnixNano(), after.ID, limit+1)
	}
	if err != nil {
		return nil, false, fmt.Errorf("quarantine: page: %w", err)
	}
	defer rows.Close()
	items = []Item{}
	for rows.Next() {
		it, err := scanItem(rows.Scan)
		if err != nil {
			return nil, false, fmt.Errorf("quarantine: page: %w", err)
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("quarantine: page: %w", err)
	}
	if len(items) > limit {
		return items[:limit], true, nil
	}
	return items, false, nil
}

func scanItem(scan func(...any) error) (Item, error) {
	var (
		it                       Item
		rcpts, action            string
		heldAt                   int64
		releaseAt, lastAttemptAt sql.NullInt64
	)
	if err := scan(&it.ID, &it.HeaderID, &it.From, &rcpts, &it.ClientAddr, &it.Helo, &it.AuthUser, &it.TLS, &it.UTF8,
		&it.Size, &action, &it.Rule, &heldAt, &releaseAt, &it.KeyID, &it.SHA256, &it.Attempts, &it.LastError,
		&lastAttemptAt); err != nil {
		return Item{}, err
	}
	if err := json.Unmarshal([]byte(rcpts), &it.To); err != nil {
		return Item{}, fmt.Errorf("recipients of %s: %w", it.ID, err)
	}
	it.Action = policies.Action(action)
	it.HeldAt = time.Unix(0, heldAt).UTC()
	if releaseAt.Valid {
		it.ReleaseAt = time.Unix(0, releaseAt.Int64).UTC()
	}
	if lastAttemptAt.Valid {
		it.LastAttemptAt = time.Unix(0, lastAttemptAt.Int64).UTC()
	}
	return it, nil
}

func nullNanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
