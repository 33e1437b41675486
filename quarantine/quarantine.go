// Package quarantine owns held mail: durable encrypted storage, release
// per recipient (with DSNs for those that cannot be reached), retries,
// rejection, deletion, timed release and the retention purge.
//
// A message a policy holds (action quarantine or hold) is stored whole as
// one encrypted blob in its own blob store (storage.dir/quarantine, id =
// attachgate's message ID, encrypted to the key ring like every attachment:
// its plaintext never touches the disk) and indexed in the table
// quarantine_items of the SQLite database, or in Redis with store.backend
// redis (instances then share storage.dir). Only when both are durable,
// and mail.held is in the audit log, does the SMTP client get its 250.
//
// The pipeline holds messages here through Manager.Holder; release calls
// the pipeline back (Deliver): the message runs through the same stages as
// any other (policies' per-part actions, attachment storage with links
// made at release time, rewrite) and goes out through a fresh next-hop
// session, as an MTA delivers: every recipient the next hop accepts gets
// it (mail.released), a recipient refused for good (5xx) is bounced to the
// envelope sender with an RFC 3464 DSN carrying the next hop's reply
// (mail.bounced), and recipients deferred (4xx, next hop down) stay held
// and are retried with a back-off until Options.MaxRetryAge, then bounced.
// Held items (action hold) are released by Run once their release_at has
// passed; quarantined ones only by an admin (API or CLI). Delete removes
// a message without telling the sender (an admin decision); Reject removes
// it and sends the sender a DSN; Run purges quarantined messages nobody
// decided on after Options.Retention, with a DSN (mail.purged).
//
// actions.go adds the people in the loop: the sender of a held message
// can cancel it or send it at once, and a message held for approval
// (action approve) is released or rejected by one of its approvers, or
// rejected when nobody decides in time; each through single-use links
// the link server serves.
package quarantine

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-smtp"
	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/relay"
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

// DeliveryError is a step of a release the next hop refused or could not
// take. Op is "connect", "MAIL FROM", "RCPT TO <addr>", "DATA", ...; Err
// is an *smtp.SMTPError when the next hop answered.
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
	// ReleasedBy is the actor whose release is being carried out ("" until
	// a release was tried); FirstFailedAt the first attempt that left
	// recipients pending: they are given up at FirstFailedAt+MaxRetryAge.
	ReleasedBy    string
	FirstFailedAt time.Time
	// Failures holds each pending recipient's latest refusal.
	Failures map[string]Failure
}

// Failure is a recipient's latest temporary refusal at release.
type Failure struct {
	// Reply is the next hop's reply ("450 4.2.0 Mailbox busy"); "" when
	// it never answered for this recipient (connection failed).
	Reply  string    `json:"reply,omitempty"`
	Status string    `json:"status"` // x.y.z for the DSN
	Error  string    `json:"error"`  // the whole error, for people
	At     time.Time `json:"at"`
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
	// DB is the attachgate SQLite database (store.SQLite.DB) that indexes
	// held mail; with store.backend redis, Redis does instead.
	DB *sql.DB
	// Redis indexes held mail in the Redis of store.backend redis under
	// RedisPrefix; instances sharing it (and storage.dir) share the held
	// mail, and exactly one of them releases a due message.
	Redis       redis.UniversalClient
	RedisPrefix string
	Dir         string         // blob directory of held messages: storage.dir/quarantine
	Ring        *vault.KeyRing // encrypts the held messages
	// Audit records mail.held, mail.released, mail.deleted, mail.deferred.
	Audit audit.Recorder
	// Hop and Deliverer release messages; both are needed for Release.
	Hop       relay.Hop
	Deliverer Deliverer
	// HoldFor is how long action hold keeps a message; 0 means 1h.
	HoldFor time.Duration
	// MaxRetryAge is how long deferred recipients of a release are
	// retried before they are bounced; 0 means 120h.
	MaxRetryAge time.Duration
	// Retention is how long a quarantined message nobody released,
	// rejected or deleted is kept before it is purged (and bounced); 0
	// means 720h.
	Retention time.Duration
	// Interval is the longest Run sleeps between looks for due items; 0
	// means 30 s. Run also wakes when the next item is due.
	Interval time.Duration
	Now      func() time.Time
	// Logger is named "component=quarantine" here.
	Logger *slog.Logger
	// Notify tells senders (DSNs, hold notices); nil tells nobody.
	Notify *notify.Service
	// Usable, when set, says whether the metadata backend may be used
	// (store.Guard.Check): while it returns an error (the backend is
	// unreachable, or not the dataset this instance served), nothing is
	// held, released, deleted, rejected or purged, and blobs are not
	// taken for leftovers.
	Usable func() error
	// KeepLeftovers skips removing crash leftovers (temp files, blobs
	// without a record) at Open: set by a command run beside a serving
	// daemon, whose message being held right now looks like a leftover.
	KeepLeftovers bool
}

const (
	defaultHoldFor     = time.Hour
	defaultMaxRetryAge = 120 * time.Hour
	defaultRetention   = 720 * time.Hour
	defaultInterval    = 30 * time.Second
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
	notify      *notify.Service
	idx         index
	maxRetryAge time.Duration
	retention   time.Duration
	blobs       *vault.BlobStore
	dir         string
	audit       audit.Recorder
	hop         relay.Hop
	deliverer   Deliverer
	holdFor     time.Duration
	interval    time.Duration
	now         func() time.Time
	log         *slog.Logger

	usable func() error

	mu   sync.Mutex
	busy map[string]bool
	wake chan struct{}

	acts *actions // sender control and approval (actions.go); nil: off
}

// Open brings the quarantine index up to date, opens the blob store and
// removes blobs without an index record (a crash between storing the blob
// and recording it, or during a deletion). Call it before serving.
func Open(ctx context.Context, o Options) (*Manager, error) {
	switch {
	case o.DB == nil && o.Redis == nil:
		return nil, errors.New("quarantine: Options.DB or Options.Redis is required")
	case o.Dir == "":
		return nil, errors.New("quarantine: Options.Dir is required")
	case o.Ring == nil:
		return nil, errors.New("quarantine: Options.Ring is required")
	case o.Audit == nil:
		return nil, errors.New("quarantine: Options.Audit is required")
	}
	var idx index
	if o.Redis != nil {
		idx = newRedisIndex(o.Redis, o.RedisPrefix)
	} else {
		sq, err := openSQLiteIndex(ctx, o.DB)
		if err != nil {
			return nil, fmt.Errorf("quarantine: %w", err)
		}
		idx = sq
	}
	blobs, err := vault.NewBlobStore(o.Dir, o.Ring)
	if err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	m := &Manager{idx: idx, maxRetryAge: o.MaxRetryAge, retention: o.Retention, blobs: blobs, dir: o.Dir, audit: o.Audit, hop: o.Hop, deliverer: o.Deliverer,
		holdFor: o.HoldFor, interval: o.Interval, now: o.Now, log: o.Logger, notify: o.Notify,
		usable: o.Usable, busy: map[string]bool{}, wake: make(chan struct{}, 1)}
	if m.usable == nil {
		m.usable = func() error { return nil }
	}
	if m.holdFor <= 0 {
		m.holdFor = defaultHoldFor
	}
	if m.maxRetryAge <= 0 {
		m.maxRetryAge = defaultMaxRetryAge
	}
	if m.retention <= 0 {
		m.retention = defaultRetention
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
	switch {
	case o.KeepLeftovers:
	case m.usable() != nil:
		// A lost dataset makes every held blob look orphaned: keep them
		// for the operator's recovery decision.
		m.log.Warn("quarantine: backend refusing; leftovers are not looked for", "err", m.usable())
	case o.Redis != nil:
		// Other instances share the directory and may be holding a
		// message right now: only leftovers older than an hour go.
		if err := m.removeSharedOrphans(ctx); err != nil {
			return nil, fmt.Errorf("quarantine: %w", err)
		}
	default:
		if _, err := blobs.CleanTemp(0); err != nil {
			return nil, fmt.Errorf("quarantine: %w", err)
		}
		if err := m.removeOrphans(ctx); err != nil {
			return nil, fmt.Errorf("quarantine: %w", err)
		}
	}
	return m, nil
}

// HoldFor is how long action hold keeps a message.
func (m *Manager) HoldFor() time.Duration { return m.holdFor }

// sharedGrace is how old a blob or temp file in a shared directory must be
// before it counts as left by a crash rather than being written now.
const sharedGrace = time.Hour

// removeSharedOrphans is removeOrphans for a directory other instances
// share (Redis): only what is older than sharedGrace goes.
func (m *Manager) removeSharedOrphans(ctx context.Context) error {
	if _, err := m.blobs.CleanTemp(sharedGrace); err != nil {
		return err
	}
	removed, err := m.blobs.Orphans(sharedGrace, func(ids []string) ([]string, error) {
		var orphans []string
		for _, id := range ids {
			if _, err := m.Get(ctx, id); errors.Is(err, ErrNotFound) {
				orphans = append(orphans, id)
			} else if err != nil {
				return nil, err
			}
		}
		return orphans, nil
	})
	if err != nil {
		return fmt.Errorf("look for orphaned blobs: %w", err)
	}
	if len(removed) > 0 {
		m.log.Warn("quarantine: removed blobs without an index record (earlier crash)", "count", len(removed))
	}
	return nil
}

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

// claim marks id busy, in this process and (Redis) across instances;
// false when it already is, or the claim cannot be taken.
func (m *Manager) claim(id string) bool {
	if err := m.usable(); err != nil {
		return false
	}
	m.mu.Lock()
	if m.busy[id] {
		m.mu.Unlock()
		return false
	}
	m.busy[id] = true
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	ok, err := m.idx.claim(ctx, id)
	if err != nil {
		m.log.Warn("quarantine: claim held message", "msg", id, "err", err)
	}
	if !ok {
		m.mu.Lock()
		delete(m.busy, id)
		m.mu.Unlock()
		return false
	}
	return true
}

func (m *Manager) unclaim(id string) {
	m.idx.unclaim(id)
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
	if err := m.usable(); err != nil {
		return Item{}, fmt.Errorf("quarantine: %w", err)
	}
	if !m.claim(it.ID) {
		return Item{}, fmt.Errorf("hold %s: %w", it.ID, ErrBusy)
	}
	defer m.unclaim(it.ID)
	it.Attempts, it.LastError, it.LastAttemptAt = 0, "", time.Time{}
	it.ReleasedBy, it.FirstFailedAt, it.Failures = "", time.Time{}, nil
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
	if err := m.idx.insert(ctx, it); err != nil {
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

// Result is a carried out release, rejection or deletion.
type Result struct {
	Item Item // as it was before
	At   time.Time
	// Reply is the next hop's final reply for the Delivered recipients
	// (release), e.g. "250 2.0.0 Ok: queued as X".
	Reply string
	// Delivered: recipients the next hop took in this release. Bounced:
	// recipients refused for good or given up (a DSN went to the sender).
	// Pending: recipients deferred, still held and retried.
	Delivered, Bounced, Pending []string
}

// Reasons of mail.released.
const (
	ReasonAdmin       = "admin"
	ReasonHoldExpired = "hold expired"
	// ReasonRetry: an automatic retry of a release that left recipients
	// pending (detail names who released it).
	ReasonRetry = "retry"
)

// Reasons of mail.bounced.
const (
	ReasonRefused = "refused by next hop"
	reasonGaveUp  = "gave up after "
)

// Release sends the held message id on, recipient by recipient, as an MTA
// does. actor names who releases ("admin:<token>", "cli:<user>", or
// audit.ActorSystem for a timed release or retry).
//
// Recipients the next hop accepts get the message (mail.released lists
// them). A recipient it refuses for good (5xx, at RCPT or at the end of
// DATA) is bounced: the envelope sender gets a DSN with the next hop's
// reply (mail.bounced). Recipients deferred (4xx, the next hop down, any
// other failure) stay held (mail.deferred) and are retried by Run with a
// back-off; at Options.MaxRetryAge after their first failure they are
// bounced. The item keeps only the pending recipients and goes away when
// none is left.
//
// The error is nil when some recipient got a final outcome (delivered or
// bounced); Result says which. When every recipient was deferred, the
// error is the first failure (a *DeliveryError when the next hop refused
// or could not be reached). An error wrapping ErrUnaudited comes with a
// full Result: the release happened but an audit event was not recorded.
func (m *Manager) Release(ctx context.Context, id, actor string) (Result, error) {
	if m.hop == nil || m.deliverer == nil {
		return Result{}, errors.New("quarantine: release needs Options.Hop and Options.Deliverer")
	}
	if err := m.usable(); err != nil {
		return Result{}, fmt.Errorf("quarantine: %w", err)
	}
	if !m.claim(id) {
		return Result{}, fmt.Errorf("release %s: %w", id, ErrBusy)
	}
	defer m.unclaim(id)
	it, err := m.Get(ctx, id)
	if err != nil {
		return Result{}, err
	}
	return m.release(ctx, it, actor)
}

// attempt is what one release attempt did.
type attempt struct {
	delivered []string
	reply     string
	// refused holds the next hop's per-recipient refusals at RCPT.
	refused map[string]error
	// err failed the whole transaction: it applies to every recipient
	// neither delivered nor refused.
	err error
}

func (m *Manager) release(ctx context.Context, it Item, actor string) (Result, error) {
	a := m.deliver(ctx, it, actor)
	// The next hop may have it now: nothing may cancel the bookkeeping.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	now := m.now()
	res := Result{Item: it, At: now, Delivered: a.delivered}
	if len(a.delivered) > 0 {
		res.Reply = "250 " + a.reply
	}
	if len(a.delivered) == 0 && errors.Is(a.err, pipeline.ErrRefusedAtRelease) {
		// The gateway refused to let it out (malware found at release):
		// nothing went anywhere, nobody is bounced, and it stays held as
		// it is, for an admin to delete or reject.
		e := m.event(audit.TypeMailDeferred, actor, it)
		e.ClientAddr = it.ClientAddr
		e.Reason = "release refused"
		e.Detail = truncate(a.err.Error())
		if err := m.audit.Record(bctx, e); err != nil {
			m.log.Error("quarantine: audit failed", "type", e.Type, "msg", it.ID, "err", err)
		}
		m.log.Warn("quarantine: release refused by the gateway; the message stays held", "msg", it.ID, "actor", actor, "err", a.err)
		return res, a.err
	}

	var bounced []notify.DSNRecipient
	var firstCause error
	pending := map[string]error{}
	for _, rcpt := range it.To {
		if slices.Contains(a.delivered, rcpt) {
			continue
		}
		cause := a.refused[rcpt]
		if cause == nil {
			cause = a.err
		}
		if cause == nil { // cannot happen: every recipient has an outcome
			cause = errors.New("no outcome")
		}
		if firstCause == nil {
			firstCause = cause
		}
		if permanent(cause) {
			bounced = append(bounced, notify.RecipientFromReply(rcpt, "", cause, now))
			continue
		}
		pending[rcpt] = cause
	}
	first := it.FirstFailedAt
	if first.IsZero() && len(pending) > 0 {
		first = now
	}
	deadline := first.Add(m.maxRetryAge)
	gaveUp := len(pending) > 0 && !now.Before(deadline)
	var gaveUpRcpts []notify.DSNRecipient
	if gaveUp {
		for _, rcpt := range it.To {
			cause, ok := pending[rcpt]
			if !ok {
				continue
			}
			r := notify.RecipientFromReply(rcpt, "", cause, now)
			r.Action = notify.ActionFailed
			gaveUpRcpts = append(gaveUpRcpts, r)
		}
		pending = map[string]error{}
	}

	// The DSN first, while the blob is there to quote: a crash before the
	// record is updated repeats the release (at least once, never lost).
	var unaudited error
	record := func(e audit.Event) {
		if err := m.audit.Record(bctx, e); err != nil {
			m.log.Error("quarantine: audit failed", "type", e.Type, "msg", it.ID, "err", err)
			if unaudited == nil {
				unaudited = fmt.Errorf("%w: %s: %v", ErrUnaudited, e.Type, err)
			}
		}
	}
	if len(bounced) > 0 {
		dsn := m.sendDSN(bctx, it, bounced, "The next hop refused these recipients when the held message was released.")
		for _, r := range bounced {
			e := m.bounceEvent(it, actor, r, ReasonRefused, dsn)
			record(e)
			res.Bounced = append(res.Bounced, r.Address)
		}
	}
	if len(gaveUpRcpts) > 0 {
		reason := reasonGaveUp + m.maxRetryAge.String()
		dsn := m.sendDSN(bctx, it, gaveUpRcpts, fmt.Sprintf(
			"The held message was released, but the next hop did not accept these recipients for %s; delivery was given up.", m.maxRetryAge))
		for _, r := range gaveUpRcpts {
			record(m.bounceEvent(it, actor, r, reason, dsn))
			res.Bounced = append(res.Bounced, r.Address)
		}
	}

	// An admin, the sender (send now), an approver, or the clock; the
	// clock again for the recipients a release left pending.
	reason := releaseReason(actor)
	if actor == audit.ActorSystem && it.ReleasedBy != "" {
		reason = ReasonRetry
	}
	if it.ReleasedBy == "" {
		it.ReleasedBy = actor
	}
	if len(pending) == 0 {
		if err := m.idx.remove(bctx, it.ID); err != nil && !errors.Is(err, ErrNotFound) {
			// It would be released again: say so loudly.
			m.log.Error("quarantine: released, but removing the index record failed; it may be released twice", "msg", it.ID, "err", err)
			return res, fmt.Errorf("quarantine: released %s, but removing its record failed: %w", it.ID, err)
		}
		m.deleteBlob(it.ID)
	} else {
		left := it
		left.To, left.Failures = nil, map[string]Failure{}
		for _, rcpt := range it.To {
			if cause, ok := pending[rcpt]; ok {
				left.To = append(left.To, rcpt)
				r := notify.RecipientFromReply(rcpt, "", cause, now)
				left.Failures[rcpt] = Failure{Reply: r.Diagnostic, Status: r.Status, Error: truncate(cause.Error()), At: now}
			}
		}
		res.Pending = left.To
		left.Attempts++
		left.LastError = truncate(firstPending(it.To, pending).Error())
		left.LastAttemptAt = now
		left.FirstFailedAt = first
		next := now.Add(backoff(left.Attempts))
		if next.After(deadline) {
			next = deadline
		}
		left.ReleaseAt = next
		if err := m.idx.update(bctx, left); err != nil {
			m.log.Error("quarantine: record the pending recipients of a release", "msg", it.ID, "err", err)
			if len(a.delivered) > 0 || len(res.Bounced) > 0 {
				return res, fmt.Errorf("quarantine: released %s in part, but recording the rest failed: %w", it.ID, err)
			}
		}
		// One mail.deferred per distinct failure.
		for _, g := range groupByCause(left.To, pending) {
			e := m.event(audit.TypeMailDeferred, actor, it)
			e.ClientAddr = it.ClientAddr
			e.Recipients = g.rcpts
			e.Reason = "release failed"
			e.Reply = replyOf(g.cause)
			e.Detail = truncate(g.cause.Error()) + "; next attempt " + next.Format(time.RFC3339) +
				", given up " + deadline.Format(time.RFC3339)
			record(e)
		}
		m.log.Warn("quarantine: release deferred for some recipients; they stay held", "msg", it.ID, "actor", actor,
			"pending", len(left.To), "attempts", left.Attempts, "next", next, "err", firstPending(it.To, pending))
		select {
		case m.wake <- struct{}{}:
		default:
		}
	}
	if len(a.delivered) > 0 {
		e := m.event(audit.TypeMailReleased, actor, it)
		e.ClientAddr = it.ClientAddr
		e.Recipients = a.delivered
		e.Reason = reason
		e.Reply = res.Reply
		e.Detail = "action=" + string(it.Action) + " rule=" + it.Rule
		if it.ReleasedBy != actor {
			e.Detail += " released_by=" + it.ReleasedBy
		}
		if len(res.Pending) > 0 {
			e.Detail += fmt.Sprintf(" pending=%d", len(res.Pending))
		}
		m.log.Info("quarantine: message released", "msg", it.ID, "actor", actor, "rcpts", len(a.delivered), "reply", a.reply)
		record(e)
	}
	if len(a.delivered) == 0 && len(res.Bounced) == 0 {
		return res, firstCause
	}
	if unaudited != nil {
		return res, unaudited
	}
	return res, nil
}

// permanent reports whether err is the next hop's refusal for good (5xx).
func permanent(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500 && se.Code < 600
}

func firstPending(order []string, pending map[string]error) error {
	for _, r := range order {
		if err, ok := pending[r]; ok {
			return err
		}
	}
	return nil
}

type causeGroup struct {
	rcpts []string
	cause error
}

// groupByCause groups rcpts (in order) by their error text.
func groupByCause(rcpts []string, causes map[string]error) []causeGroup {
	var groups []causeGroup
	at := map[string]int{}
	for _, r := range rcpts {
		c := causes[r]
		k := c.Error()
		i, ok := at[k]
		if !ok {
			i = len(groups)
			at[k] = i
			groups = append(groups, causeGroup{cause: c})
		}
		groups[i].rcpts = append(groups[i].rcpts, r)
	}
	return groups
}

// replyOf is the next hop's reply in err, "" when it did not answer.
func replyOf(err error) string {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return ""
	}
	if se.EnhancedCode == smtp.NoEnhancedCode || se.EnhancedCode[0] <= 0 {
		return fmt.Sprintf("%d %s", se.Code, se.Message)
	}
	return fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
}

func truncate(s string) string {
	if len(s) > maxErrorLen {
		s = s[:maxErrorLen]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// bounceEvent is mail.bounced for one recipient.
func (m *Manager) bounceEvent(it Item, actor string, r notify.DSNRecipient, reason, dsn string) audit.Event {
	e := m.event(audit.TypeMailBounced, actor, it)
	e.ClientAddr = it.ClientAddr
	e.Recipients = []string{r.Address}
	e.Reason = reason
	e.Reply = r.Diagnostic
	e.Detail = "status=" + r.Status + " " + dsn + " action=" + string(it.Action) + " rule=" + it.Rule
	return e
}

// DSN outcomes as they appear in the detail of audit events.
const (
	dsnQueued     = "dsn=queued"
	dsnNullSender = "dsn=none (null sender)"
)

// sendDSN queues a DSN about it for rcpts to the envelope sender, quoting
// the held message's header section (streamed from the blob), and returns
// the outcome for the audit detail. A DSN that cannot be queued is logged
// (the notifier records notice.failed); the bounce stands.
func (m *Manager) sendDSN(ctx context.Context, it Item, rcpts []notify.DSNRecipient, reason string) string {
	if it.From == "" {
		return dsnNullSender
	}
	if m.notify == nil {
		m.log.Error("quarantine: no notifier; the sender is not told", "msg", it.ID, "rcpts", len(rcpts))
		return "dsn=none (no notifier)"
	}
	d := notify.DSN{To: it.From, About: it.ID, ArrivalDate: it.HeldAt, Reason: reason, Recipients: rcpts}
	if h, err := m.header(it); err == nil {
		d.Subject = decodeHeader(h.Get("Subject"))
	} else {
		m.log.Warn("quarantine: read the held message's header for a DSN", "msg", it.ID, "err", err)
	}
	rd, err := m.blobs.Open(it.ID, it.KeyID)
	if err == nil {
		defer rd.Close()
		d.OriginalHeaders = rd
	} else {
		m.log.Warn("quarantine: open the held message for a DSN", "msg", it.ID, "err", err)
	}
	if err := m.notify.SendDSN(ctx, d); err != nil {
		if errors.Is(err, notify.ErrNullSender) {
			return dsnNullSender
		}
		return "dsn=failed (" + truncate(err.Error()) + ")"
	}
	m.log.Info("quarantine: DSN queued", "msg", it.ID, "to", it.From, "rcpts", len(rcpts))
	return dsnQueued
}

// maxHeader bounds the header section read from a held message.
const maxHeader = 1 << 20

// header reads the held message's header section (not its body).
func (m *Manager) header(it Item) (textproto.Header, error) {
	rd, err := m.blobs.Open(it.ID, it.KeyID)
	if err != nil {
		return textproto.Header{}, err
	}
	defer rd.Close()
	h, err := textproto.ReadHeader(bufio.NewReader(io.LimitReader(rd, maxHeader)))
	if err != nil {
		return textproto.Header{}, fmt.Errorf("header of %s: %w", it.ID, err)
	}
	return h, nil
}

// decodeHeader decodes RFC 2047 encoded words; undecodable text stays.
func decodeHeader(v string) string {
	dec := mime.WordDecoder{CharsetReader: message.CharsetReader}
	if s, err := dec.DecodeHeader(v); err == nil {
		return s
	}
	return v
}

// deliver opens a next-hop session, passes MAIL and each RCPT, and hands
// the session with the accepted recipients to the Deliverer.
func (m *Manager) deliver(ctx context.Context, it Item, actor string) attempt {
	a := attempt{refused: map[string]error{}}
	sess, err := m.hop.Open(ctx)
	if err != nil {
		a.err = &DeliveryError{Op: "connect", Err: err}
		return a
	}
	defer sess.Close()
	var opts *smtp.MailOptions
	if it.UTF8 {
		opts = &smtp.MailOptions{UTF8: true}
	}
	if err := sess.Mail(it.From, opts); err != nil {
		a.err = &DeliveryError{Op: "MAIL FROM", Err: err}
		return a
	}
	var accepted []string
	for _, rcpt := range it.To {
		err := sess.Rcpt(rcpt, nil)
		if err == nil {
			accepted = append(accepted, rcpt)
			continue
		}
		de := &DeliveryError{Op: "RCPT TO <" + rcpt + ">", Err: err}
		if relay.IsTransport(err) {
			// The connection is gone (or 421): the recipients not yet
			// refused are deferred.
			a.err = de
			return a
		}
		a.refused[rcpt] = de
	}
	if len(accepted) == 0 {
		sess.Reset()
		return a
	}
	out := it
	out.To = accepted
	src := blobSource{blobs: m.blobs, id: it.ID, keyID: it.KeyID}
	reply, err := m.deliverer.Deliver(ctx, out, src, sess, actor)
	if err != nil {
		a.err = err
		return a
	}
	a.delivered, a.reply = accepted, reply
	return a
}

// Deliver is the Deliverer that runs held messages through p.
func Deliver(p *pipeline.Pipeline) Deliverer { return pipelineDeliverer{p} }

type pipelineDeliverer struct{ p *pipeline.Pipeline }

func (d pipelineDeliverer) Deliver(ctx context.Context, it Item, msg Source, hop relay.Session, actor string) (string, error) {
	reply, err := d.p.Release(ctx, pipeline.Released{ID: it.ID, Env: envelope(it), Size: it.Size,
		ReceivedAt: it.HeldAt, Actor: actor, Source: msg}, hop)
	var re *relay.Error
	var se *smtp.SMTPError
	if errors.Is(err, pipeline.ErrRefusedAtRelease) {
		return "", err // our own verdict, not the next hop's
	}
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
// mail.deleted with actor. The sender is not told: deleting is an admin's
// decision (Reject tells the sender). An error wrapping ErrUnaudited comes with a
// Result: the message was deleted.
func (m *Manager) Delete(ctx context.Context, id, actor string) (Result, error) {
	if err := m.usable(); err != nil {
		return Result{}, fmt.Errorf("quarantine: %w", err)
	}
	if !m.claim(id) {
		return Result{}, fmt.Errorf("delete %s: %w", id, ErrBusy)
	}
	defer m.unclaim(id)
	it, err := m.Get(ctx, id)
	if err != nil {
		return Result{}, err
	}
	if err := m.idx.remove(ctx, id); err != nil {
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
	if err := m.idx.remove(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
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

// maxReason bounds the reason of Reject.
const maxReason = 500

// ErrNoReason: Reject needs a reason the sender can read.
var ErrNoReason = errors.New("quarantine: a rejection needs a reason")

// Reject removes the held message id without delivering it and sends the
// envelope sender a DSN (every pending recipient failed, status 5.7.1)
// saying reason; it records mail.rejected with actor and reason. This is
// the refusal of an approver or an admin; Delete removes without a DSN.
// An error wrapping ErrUnaudited comes with a Result: the message was
// rejected.
func (m *Manager) Reject(ctx context.Context, id, actor, reason string) (Result, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return Result{}, ErrNoReason
	}
	if len(reason) > maxReason || !utf8.ValidString(reason) {
		return Result{}, fmt.Errorf("quarantine: reject reason: at most %d bytes of UTF-8 text", maxReason)
	}
	if err := m.usable(); err != nil {
		return Result{}, fmt.Errorf("quarantine: %w", err)
	}
	if !m.claim(id) {
		return Result{}, fmt.Errorf("reject %s: %w", id, ErrBusy)
	}
	defer m.unclaim(id)
	it, err := m.Get(ctx, id)
	if err != nil {
		return Result{}, err
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	res, err := m.drop(bctx, it, actor, audit.TypeMailRejected, reason,
		"The held message was not sent: "+reason)
	return res, err
}

// drop bounces every pending recipient of it with a DSN saying why, then
// removes it and records typ with reason.
func (m *Manager) drop(ctx context.Context, it Item, actor string, typ audit.EventType, reason, why string) (Result, error) {
	now := m.now()
	rcpts := make([]notify.DSNRecipient, 0, len(it.To))
	for _, r := range it.To {
		rcpts = append(rcpts, notify.DSNRecipient{Address: r, Action: notify.ActionFailed, Status: "5.7.1", LastAttempt: now})
	}
	dsn := dsnNullSender
	if len(rcpts) > 0 {
		dsn = m.sendDSN(ctx, it, rcpts, why)
	}
	if err := m.idx.remove(ctx, it.ID); err != nil {
		return Result{}, err
	}
	m.deleteBlob(it.ID)
	res := Result{Item: it, At: now, Bounced: it.To}
	e := m.event(typ, actor, it)
	e.ClientAddr = it.ClientAddr
	e.Reason = reason
	e.Detail = "status=5.7.1 " + dsn + " action=" + string(it.Action) + " rule=" + it.Rule
	m.log.Info("quarantine: held message dropped, sender told", "msg", it.ID, "type", typ, "actor", actor, "reason", reason, "dsn", dsn)
	if err := m.audit.Record(ctx, e); err != nil {
		m.log.Error("quarantine: audit failed", "type", typ, "msg", it.ID, "err", err)
		return res, fmt.Errorf("%w: %s: %v", ErrUnaudited, typ, err)
	}
	return res, nil
}

// ReasonRetention is the Reason of mail.purged.
const ReasonRetention = "retention"

// PurgeExpired removes the held messages no release is pending for
// (quarantined, never released) that were held longer than
// Options.Retention ago: the sender gets a DSN, mail.purged is recorded
// (actor system). It returns how many went.
func (m *Manager) PurgeExpired(ctx context.Context) (int, error) {
	if err := m.usable(); err != nil {
		return 0, fmt.Errorf("quarantine: %w", err)
	}
	before := m.now().Add(-m.retention)
	ids, err := m.idx.expired(ctx, before)
	if err != nil {
		return 0, fmt.Errorf("quarantine: expired items: %w", err)
	}
	n := 0
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		if m.purge(ctx, id, before) {
			n++
		}
	}
	return n, nil
}

func (m *Manager) purge(ctx context.Context, id string, before time.Time) bool {
	if !m.claim(id) {
		return false
	}
	defer m.unclaim(id)
	it, err := m.Get(ctx, id)
	if err != nil || !it.ReleaseAt.IsZero() || !it.HeldAt.Before(before) {
		return false // gone, or released meanwhile
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	_, err = m.drop(bctx, it, audit.ActorSystem, audit.TypeMailPurged, ReasonRetention,
		fmt.Sprintf("The held message was not released within %s and has been deleted.", m.retention))
	if err != nil && !errors.Is(err, ErrUnaudited) {
		m.log.Error("quarantine: purge", "msg", id, "err", err)
		return false
	}
	return true
}

// ReleaseDue releases every held item whose release_at has passed (timed
// holds and retries) and returns how many went out to at least one
// recipient or were bounced. Items busy elsewhere (an admin call, another
// instance) are skipped; failures stay held (with a back-off) and are
// logged.
func (m *Manager) ReleaseDue(ctx context.Context) (int, error) {
	if err := m.usable(); err != nil {
		return 0, fmt.Errorf("quarantine: %w", err)
	}
	ids, err := m.idx.due(ctx, m.now())
	if err != nil {
		return 0, fmt.Errorf("quarantine: due items: %w", err)
	}
	released := 0
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		res, err := m.Release(ctx, id, audit.ActorSystem)
		switch {
		case err == nil || errors.Is(err, ErrUnaudited):
			if len(res.Delivered) > 0 || len(res.Bounced) > 0 {
				released++
			}
		case errors.Is(err, ErrBusy), errors.Is(err, ErrNotFound):
		default:
			// release() logged and recorded it.
		}
	}
	return released, nil
}

// Run releases due held items at start, whenever the next one is due, and
// at least every Options.Interval, and purges expired ones, until ctx
// ends.
func (m *Manager) Run(ctx context.Context) {
	go m.runActions(ctx) // approval deadlines (actions.go)
	for {
		// While the backend is refusing, its guard logs the state change;
		// nothing is released or purged meanwhile.
		if m.usable() == nil {
			if _, err := m.ReleaseDue(ctx); err != nil {
				m.log.Error("quarantine: timed release", "err", err)
			}
			if _, err := m.PurgeExpired(ctx); err != nil {
				m.log.Error("quarantine: retention purge", "err", err)
			}
		}
		wait := m.interval
		if next, ok, err := m.idx.nextDue(ctx); err == nil && ok {
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

// Get returns the held item id, or ErrNotFound.
func (m *Manager) Get(ctx context.Context, id string) (Item, error) {
	if err := m.usable(); err != nil {
		return Item{}, fmt.Errorf("quarantine: %w", err)
	}
	return m.idx.get(ctx, id)
}

// List returns every held item, oldest first.
func (m *Manager) List(ctx context.Context) ([]Item, error) {
	if err := m.usable(); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	return m.idx.list(ctx)
}

// Original opens the held message id as it arrived (decrypted, streamed).
// Reading it is for admins: callers audit it.
func (m *Manager) Original(ctx context.Context, id string) (Item, io.ReadCloser, error) {
	it, err := m.Get(ctx, id)
	if err != nil {
		return Item{}, nil, err
	}
	rd, err := m.blobs.Open(it.ID, it.KeyID)
	if err != nil {
		return Item{}, nil, fmt.Errorf("quarantine: open %s: %w", id, err)
	}
	return it, rd, nil
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
	if err := m.usable(); err != nil {
		return nil, false, fmt.Errorf("quarantine: %w", err)
	}
	return m.idx.page(ctx, after, limit)
}
