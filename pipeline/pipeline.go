// Package pipeline owns the way of one message through attachgate, from
// its body to the next hop's final reply, as one transaction: check (the
// policies decide every attachment), store (linked attachments go
// encrypted into the vault, their records into the store and the audit
// log), rewrite (notice and links in place of the attachments) and deliver
// (to the next hop, or into the quarantine). A transaction ends in exactly
// one Commit or Abort; only Abort rolls back, and every exit records its
// outcome in the audit log.
//
// The pipeline knows nothing of SMTP sessions: smtpd speaks SMTP with the
// client and hands each message over (Process); quarantine releases held
// messages through the same stages (Release). Its next hop is a
// relay.Session on which MAIL and every RCPT were already accepted.
package pipeline

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-message/charset"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/dkim"
	"github.com/attachgate/attachgate/mailpart"
	"github.com/attachgate/attachgate/metrics"
	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

// Envelope is what the SMTP conversation told us about a message.
type Envelope struct {
	From       string
	To         []string
	ClientAddr string
	Helo       string
	AuthUser   string
	TLS        bool
	UTF8       bool // MAIL FROM carried SMTPUTF8 (kept for held mail)
	// TrustedNetwork is the smtp.trusted_networks entry that allowed an
	// unauthenticated client to relay ("" when it authenticated).
	TrustedNetwork string
	// RequireTenant, when not empty, relays the message only if its
	// header has exactly one X-MS-Exchange-CrossTenant-Id naming one of
	// these Microsoft 365 tenants (lower-case GUIDs): the client is in
	// smtp.microsoft365.networks, which every Microsoft 365 customer sends
	// from, and only the tenant Microsoft stamps tells ours from others.
	RequireTenant []string
	// Microsoft365Network is the smtp.microsoft365.networks entry the
	// client sent from (with RequireTenant).
	Microsoft365Network string
}

// Pipeline is the configuration every transaction runs with. It is safe
// for concurrent use; each message is its own Transaction.
type Pipeline struct {
	Hostname string
	SpoolDir string
	Store    store.Store
	Blobs    *vault.BlobStore
	Audit    audit.Recorder
	Limits   mailpart.Limits
	BaseURL  string        // links.base_url, no trailing slash
	Expiry   time.Duration // links.default_expiry, for rules without link.expiry
	// MaxDownloads is links.max_downloads, for rules without
	// link.max_downloads (0 = unlimited).
	MaxDownloads int
	Language     string // notice language: en, ja, both
	Location     *time.Location
	// LogSubjects puts the Subject into mail.received (audit.log_subjects);
	// off by default, subjects being personal data.
	LogSubjects bool
	// Policies decide per attachment (decide.go); nil links every
	// attachment.
	Policies *policies.Engine
	// DKIM signs the final message for the domain of its From header
	// (dkim.go); nil signs nothing.
	DKIM *dkim.Keys
	// Quarantine keeps the messages a policy holds (quarantine, hold);
	// nil: such a verdict is a temporary failure.
	Quarantine Holder
	// KeepAlive is how often the idle next-hop session gets a NOOP while
	// a message is received and stored; 0 means 60 s.
	KeepAlive time.Duration
	Now       func() time.Time
	// Logger is named "component=pipeline" here.
	Logger *slog.Logger
	// Metrics counts each message's outcome (summary.go); nil: none.
	Metrics *metrics.Metrics
	// Notify sends the gateway's own mail (receipts, notices, DSNs); nil
	// sends none. A notice never fails the mail it is about.
	Notify *notify.Service
	// Scan sends every attachment read to clamd (scan.go); nil scans
	// nothing.
	Scan *Scan

	settings atomic.Pointer[Settings] // set by Reload

	logOnce sync.Once
	log     *slog.Logger
}

// Settings are what a configuration reload (SIGHUP) changes while mail
// flows. A transaction uses one snapshot from its first stage to its last.
type Settings struct {
	Policies *policies.Engine
	DKIM     *dkim.Keys
}

// Reload makes s the settings of the transactions that begin from now on;
// transactions in flight finish with the ones they began with.
func (p *Pipeline) Reload(s Settings) { p.settings.Store(&s) }

// current is the last Reload, else the Policies and DKIM fields.
func (p *Pipeline) current() Settings {
	if s := p.settings.Load(); s != nil {
		return *s
	}
	return Settings{Policies: p.Policies, DKIM: p.DKIM}
}

// ErrRefusedAtRelease marks a release the gateway itself refuses (malware
// found in a held message): nothing went to the next hop, and the message
// must stay held, not be bounced as if the next hop had refused it.
var ErrRefusedAtRelease = errors.New("the gateway refuses to release the message")

// Holder keeps messages a policy holds; quarantine.Manager.Holder is one.
type Holder interface {
	// Hold stores the message read from msg durably (encrypted) and
	// records mail.held; it returns the reply text after 250. On error
	// nothing of it is kept.
	Hold(ctx context.Context, h Held, msg io.Reader) (reply string, err error)
}

// Held is a message a policy holds.
type Held struct {
	ID       string // attachgate's message ID
	HeaderID string // the Message-ID header
	Env      Envelope
	Size     int64
	Action   policies.Action // policies.Hold, Approve or Quarantine
	Rule     string
	// Of the deciding rule: how long a hold lasts (0: the quarantine's
	// default), who approves and until when (approve).
	HoldFor         time.Duration
	Approvers       []string
	ApprovalTimeout time.Duration
}

// Source reopens a message from its start: the spool of an SMTP
// transaction, or the blob of a held message.
type Source interface {
	Open() (io.ReadCloser, error)
}

const (
	copyBufferSize   = 64 << 10
	defaultKeepAlive = 60 * time.Second
	// outcomeTimeout bounds recording an outcome and rolling back, which
	// must not be cancelled with the session.
	outcomeTimeout = 30 * time.Second
)

// subjectDecoder decodes RFC 2047 words in any charset go-message knows.
var subjectDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// Process runs one message received over SMTP: env is its envelope, r its
// body (always consumed), hop the next hop with MAIL and every RCPT
// accepted. It returns the reply text after 250 (the next hop's, or the
// quarantine's); the error is nil only when the message was relayed or
// held. Errors the client should see verbatim are *smtp.SMTPError; a lost
// next hop is a *relay.Error.
func (p *Pipeline) Process(ctx context.Context, env Envelope, r io.Reader, hop relay.Session) (string, error) {
	tx := p.Begin(ctx, env, hop)
	if err := tx.Body(ctx, r); err != nil {
		return "", tx.Abort(err)
	}
	return tx.Commit(ctx), nil
}

// Release runs a held message through the same stages: the policies'
// per-part actions apply (a message-level one links the part: the message
// was held already), links are made now, so their expiry counts from
// release; the Received field keeps the time the message came in. hop has
// MAIL and every RCPT accepted. Failures are left to the caller to record
// (quarantine keeps the item and records mail.deferred).
func (p *Pipeline) Release(ctx context.Context, m Released, hop relay.Session) (string, error) {
	tx := p.beginRelease(ctx, m, hop)
	if err := tx.run(ctx, m.Source, m.Size, nil); err != nil {
		return "", tx.Abort(err)
	}
	return tx.Commit(ctx), nil
}

// Released is a held message going out.
type Released struct {
	ID         string // attachgate's message ID, kept from arrival
	Env        Envelope
	Size       int64
	ReceivedAt time.Time // when it came in: the time of its Received field
	Actor      string    // who releases: "admin:<token>" or "system"
	Source     Source
}

// keepAlive sends NOOP to the next hop every KeepAlive until the returned
// function is called; that function waits for the sender to stop (the
// relay session is not safe for concurrent use) and returns the first
// transport failure, after which the message cannot be relayed.
func (p *Pipeline) keepAlive(hop relay.Session, log *slog.Logger) func() error {
	interval := p.KeepAlive
	if interval <= 0 {
		interval = defaultKeepAlive
	}
	stop, done := make(chan struct{}), make(chan error, 1)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				done <- nil
				return
			case <-t.C:
				if err := hop.Noop(); err != nil {
					log.Warn("next hop keep-alive failed", "err", err)
					<-stop
					done <- err
					return
				}
			}
		}
	}()
	var once sync.Once
	var result error
	return func() error {
		once.Do(func() {
			close(stop)
			result = <-done
		})
		return result
	}
}

// receivedHeader is our trace field (RFC 5321 section 4.4).
func (p *Pipeline) receivedHeader(msgID string, env Envelope, at time.Time) string {
	with := "ESMTP"
	if env.TLS {
		with += "S"
	}
	if env.AuthUser != "" {
		with += "A"
	}
	helo := sanitizeHeaderWord(env.Helo)
	return fmt.Sprintf("Received: from %s ([%s])\r\n\tby %s (attachgate) with %s id %s;\r\n\t%s\r\n",
		helo, env.ClientAddr, p.Hostname, with, msgID, at.Format(time.RFC1123Z))
}

func sanitizeHeaderWord(s string) string {
	s = strings.Map(func(r rune) rune {
		if r <= ' ' || r == 0x7f || r == '(' || r == ')' || r == ';' {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return "unknown"
	}
	if len(s) > 255 {
		s = s[:255]
	}
	return s
}

// SharedCommit reports whether a message's records and audit events go
// into one SQLite transaction (group-committed: one fsync for many
// messages). serve logs it; false with the SQLite store means a wrapper
// hides the log's RecordWith and every message pays two commits.
func (p *Pipeline) SharedCommit() bool {
	_, _, _, ok := p.sharedDB()
	return ok
}

// sharedLog is an audit log kept in the SQLite database of the store
// (audit.SQLiteLog, or the metrics wrapper around it).
type sharedLog interface {
	RecordWith(ctx context.Context, events []audit.Event, extra audit.TxFunc) error
	DB() *sql.DB
}

// sharedDB returns store and audit log when both are kept in one SQLite
// database, so a message's records and events can share a transaction
// (one fsync, group-committed with concurrent messages). The store is
// reached through its wrappers (metrics, the dataset guard); check runs
// the guards' checks, which the caller must pass before writing.
func (p *Pipeline) sharedDB() (st *store.SQLite, al sharedLog, check func() error, ok bool) {
	var checks []func() error
	s := p.Store
	for {
		if c, isGuard := s.(interface{ Check() error }); isGuard {
			checks = append(checks, c.Check)
		}
		u, wraps := s.(interface{ Unwrap() store.Store })
		if !wraps {
			break
		}
		s = u.Unwrap()
	}
	if st, ok = s.(*store.SQLite); !ok {
		return nil, nil, nil, false
	}
	if al, ok = p.Audit.(sharedLog); !ok || al.DB() != st.DB() {
		return nil, nil, nil, false
	}
	check = func() error {
		for _, c := range checks {
			if err := c(); err != nil {
				return err
			}
		}
		return nil
	}
	return st, al, check, true
}

func (p *Pipeline) deleteBlobs(files []store.File, log *slog.Logger) {
	for _, f := range files {
		if err := p.Blobs.Delete(f.ID); err != nil {
			log.Error("rollback: delete blob", "file", f.ID, "err", err)
		}
	}
}

func (p *Pipeline) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// logger is the package's logger, named by the package.
func (p *Pipeline) logger() *slog.Logger {
	p.logOnce.Do(func() {
		l := p.Logger
		if l == nil {
			l = slog.Default()
		}
		p.log = l.With("component", "pipeline")
	})
	return p.log
}
