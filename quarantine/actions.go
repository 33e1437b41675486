package quarantine

// Sender control of held mail (action hold) and supervisor approval
// (action approve): the links the gateway mails, what each does, and the
// state behind them.
//
// When a message is held with action hold, its envelope sender (never the
// null sender) gets a notice with two links, Cancel and Send now; with
// action approve each approver gets a request with a link to view the
// message's text and two links, Approve and Reject. Every link is
// base_url/h/{token}: a 256-bit random token, stored only as its SHA-256
// hash in quarantine_actions with the held message it acts on, the
// action, the address it was mailed to, its expiry and when it was used.
// Opening a link never acts (the link server shows a page); its POST does,
// once.
//
// quarantine_flows keeps one row per message under sender control or
// approval: the approvers, the deadline (the hold's release time, or the
// approval deadline) and the decision. The decision is taken with one
// conditional UPDATE, so of two approvers pressing at once exactly one
// decides; every other link of the message then shows what was decided.
// runActions (started by Run) rejects messages nobody approved by their
// deadline and carries out decisions a crash interrupted; the deadline
// lives in the database, so it survives restarts like release_at does.
//
// That is the SQLite store (EnableActions). With store.backend redis the
// same state lives in Redis (EnableActionsRedis, redisactions.go), where
// the decision is one Lua script: instances sharing the Redis share the
// links, and exactly one decides.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"github.com/redis/go-redis/v9"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/mailpart"
	"github.com/attachgate/attachgate/notify"
	"github.com/attachgate/attachgate/notify/mailtmpl"
	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/store"
)

// TicketKind is what a link does.
type TicketKind string

// The links of held mail.
const (
	TicketCancel  TicketKind = "cancel"  // sender: delete the held message, never send it
	TicketSendNow TicketKind = "send"    // sender: release it now
	TicketView    TicketKind = "view"    // approver: read the message's text
	TicketApprove TicketKind = "approve" // approver: release it
	TicketReject  TicketKind = "reject"  // approver: reject it (DSN to the sender)
)

// TicketState says whether a link can still act.
type TicketState int

// States of a link.
const (
	TicketOpen    TicketState = iota // it works
	TicketUsed                       // it has been used
	TicketDecided                    // someone decided about the message (Decision)
	TicketExpired                    // its time has passed
	TicketGone                       // the message is no longer held
)

// Decisions of a flow.
const (
	DecisionCancelled = "cancelled" // the sender cancelled the held message
	DecisionSent      = "sent"      // the sender sent it at once
	DecisionApproved  = "approved"
	DecisionRejected  = "rejected"
	DecisionExpired   = "expired" // nobody approved it in time: rejected
	// decisionGone: the message left the quarantine another way (an
	// admin released or deleted it) before anyone decided.
	decisionGone = "gone"
)

// Ticket is a link and the held message it is about, for its page.
type Ticket struct {
	Kind  TicketKind
	State TicketState
	// TokenHash is the SHA-256 of the link's token.
	TokenHash []byte
	ItemID    string
	Party     string // the address the link was mailed to
	// Deadline is when the hold ends (hold) or approval times out.
	Deadline  time.Time
	UsedAt    time.Time
	Decision  string // "" or one of the Decision constants
	DecidedBy string // the address that decided, or "system"
	DecidedAt time.Time
	Reason    string // an approver's reason, or why the system decided

	// Of the held message; set for an open link.
	Sender     string
	Recipients []string
	Subject    string
	Files      []string
	// View links only: the top-level header fields a reader needs and
	// the first text/plain part, at most maxViewText bytes.
	Header        [][2]string
	Text          string
	TextTruncated bool
}

// Errors of Ticket and Act.
var (
	// ErrTokenUnknown: no link has this token (mistyped, forged or long
	// purged).
	ErrTokenUnknown = errors.New("quarantine: unknown link")
	// ErrTicketClosed: the link exists but can no longer act; the
	// Ticket's State says why.
	ErrTicketClosed = errors.New("quarantine: link can no longer be used")
	// ErrNotAnAction: the link only shows (view).
	ErrNotAnAction = errors.New("quarantine: this link does not act")
	// ErrActionsOff: no links are configured (EnableActions not called).
	ErrActionsOff = errors.New("quarantine: sender control and approval need links.base_url (EnableActions)")
)

const (
	actionsComponent = "quarantine-actions"
	// maxViewText bounds the text the view page shows.
	maxViewText = 64 << 10
	// maxFilesShown bounds the file names a notice or page lists.
	maxFilesShown = 100
	// maxActionReason bounds an approver's reason.
	maxActionReason = 500
	// keepClosed is how long links and decisions are kept after their
	// message left, so a late click gets "already decided" rather than
	// "unknown link".
	keepClosed = 7 * 24 * time.Hour
	// retryDecided waits before runActions carries out a decision again
	// (the request that took it may still be at it).
	retryDecided = time.Minute
	// maxTokenLen: real tokens are 43 characters.
	maxTokenLen = 128
)

var actionMigrations = []string{
	`CREATE TABLE quarantine_flows (
		item_id    TEXT PRIMARY KEY,
		kind       TEXT NOT NULL,            -- hold or approve
		approvers  TEXT NOT NULL,            -- JSON array; [] for hold
		deadline   INTEGER NOT NULL,         -- unix ns: release time (hold) or approval deadline
		timeout    INTEGER NOT NULL,         -- ns: the approval timeout (approve)
		created_at INTEGER NOT NULL,
		decision   TEXT NOT NULL DEFAULT '',
		decided_by TEXT NOT NULL DEFAULT '',
		decided_at INTEGER,
		reason     TEXT NOT NULL DEFAULT '',
		done_at    INTEGER                   -- the decision was carried out
	);
	CREATE INDEX quarantine_flows_open ON quarantine_flows(decision, deadline);
	CREATE TABLE quarantine_actions (
		token_hash BLOB PRIMARY KEY,
		item_id    TEXT NOT NULL,
		kind       TEXT NOT NULL,            -- cancel, send, view, approve, reject
		party      TEXT NOT NULL,            -- the address the link was mailed to
		expires_at INTEGER NOT NULL,
		used_at    INTEGER
	);
	CREATE INDEX quarantine_actions_item ON quarantine_actions(item_id);`,
}

// actions is sender control and approval: the links' base URL and the
// state behind them, in SQLite (sqliteActions) or Redis (redisActions).
type actions struct {
	actionStore
	baseURL string // links.base_url, no trailing slash
	wake    chan struct{}
}

// actionStore keeps the flows and their links. decide is atomic: of any
// number of callers (in any number of instances) deciding one flow, one
// wins, and a link is used at most once.
type actionStore interface {
	insertFlow(ctx context.Context, id, kind, approvers string, deadline time.Time, timeout time.Duration, now time.Time, links []link) error
	deleteFlow(ctx context.Context, id string) error
	ticket(ctx context.Context, hash []byte) (Ticket, error)
	decide(ctx context.Context, hash []byte, id, decision, by, reason string, now time.Time) (bool, error)
	undo(ctx context.Context, hash []byte, id string) error
	done(ctx context.Context, id string, now time.Time, log interface{ Error(string, ...any) })
	expiredApprovals(ctx context.Context, now time.Time) ([]flowRow, error)
	undone(ctx context.Context, decidedBefore time.Time) ([]flowRow, error)
	nextDeadline(ctx context.Context) (time.Time, bool)
	purge(ctx context.Context, before time.Time) error
}

// sqliteActions keeps the flows in quarantine_flows and their links in
// quarantine_actions.
type sqliteActions struct{ db *sql.DB }

// insertFlow records a flow and wakes runActions for its deadline.
func (a *actions) insertFlow(ctx context.Context, id, kind, approvers string, deadline time.Time, timeout time.Duration, now time.Time, links []link) error {
	if err := a.actionStore.insertFlow(ctx, id, kind, approvers, deadline, timeout, now, links); err != nil {
		return err
	}
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return nil
}

// EnableActions turns on sender control (hold) and approval (approve):
// links are baseURL + "/h/{token}", their state is kept in db (the
// attachgate SQLite database; tables quarantine_flows and
// quarantine_actions). Call it once after Open, before serving; without
// it a message held with action approve is refused (it could never be
// approved) and held mail gets no sender notice.
func (m *Manager) EnableActions(ctx context.Context, db *sql.DB, baseURL string) error {
	if db == nil {
		return errors.New("quarantine: EnableActions needs the SQLite database")
	}
	if err := checkBaseURL(baseURL); err != nil {
		return err
	}
	if err := store.Migrate(ctx, db, actionsComponent, actionMigrations); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	m.acts = &actions{actionStore: &sqliteActions{db: db}, baseURL: strings.TrimRight(baseURL, "/"), wake: make(chan struct{}, 1)}
	return nil
}

// EnableActionsRedis is EnableActions with the state kept in Redis (see
// redisactions.go) under prefix, the prefix of Options.RedisPrefix:
// instances sharing that Redis share the links, and of two of them
// deciding one message at once exactly one decides.
func (m *Manager) EnableActionsRedis(ctx context.Context, c redis.UniversalClient, prefix, baseURL string) error {
	if c == nil {
		return errors.New("quarantine: EnableActionsRedis needs a Redis client")
	}
	if err := checkBaseURL(baseURL); err != nil {
		return err
	}
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("quarantine: sender control state in Redis: %w", err)
	}
	m.acts = &actions{actionStore: newRedisActions(c, prefix), baseURL: strings.TrimRight(baseURL, "/"), wake: make(chan struct{}, 1)}
	return nil
}

func checkBaseURL(baseURL string) error {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("quarantine: links base URL %q is not an http(s) URL", baseURL)
	}
	return nil
}

// link is one token made for a flow, in plaintext until it is mailed.
type link struct {
	kind  TicketKind
	party string
	token string
	hash  []byte
}

// flowPrep is what beforeHold made for afterHold.
type flowPrep struct {
	deadline time.Time
	timeout  time.Duration
	links    []link
}

func newLinks(party string, kinds ...TicketKind) ([]link, error) {
	var out []link
	for _, k := range kinds {
		tok, hash, err := store.NewToken()
		if err != nil {
			return nil, err
		}
		out = append(out, link{kind: k, party: party, token: tok, hash: hash})
	}
	return out, nil
}

// beforeHold records the approval of a message about to be held with
// action approve: approvers, deadline and their links. Without that the
// message is not held (the client gets a 4xx): it could never be
// approved, nor time out.
func (m *Manager) beforeHold(ctx context.Context, held pipeline.Held) (*flowPrep, error) {
	if held.Action != policies.Approve {
		return nil, nil
	}
	if m.acts == nil {
		return nil, fmt.Errorf("hold %s for approval: %w", held.ID, ErrActionsOff)
	}
	if len(held.Approvers) == 0 {
		return nil, fmt.Errorf("quarantine: hold %s for approval: rule %s names no approvers", held.ID, held.Rule)
	}
	timeout := held.ApprovalTimeout
	if timeout <= 0 {
		timeout = policies.DefaultApprovalTimeout
	}
	prep := &flowPrep{deadline: m.now().Add(timeout), timeout: timeout}
	for _, a := range held.Approvers {
		ls, err := newLinks(a, TicketView, TicketApprove, TicketReject)
		if err != nil {
			return nil, fmt.Errorf("quarantine: hold %s for approval: %w", held.ID, err)
		}
		prep.links = append(prep.links, ls...)
	}
	approvers, _ := json.Marshal(held.Approvers)
	err := m.acts.insertFlow(ctx, held.ID, string(policies.Approve), string(approvers), prep.deadline, timeout, m.now(), prep.links)
	if err != nil {
		return nil, fmt.Errorf("quarantine: hold %s for approval: %w", held.ID, err)
	}
	return prep, nil
}

// abandonFlow removes what beforeHold recorded for a message whose hold
// failed.
func (m *Manager) abandonFlow(id string) {
	if m.acts == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	if err := m.acts.deleteFlow(ctx, id); err != nil {
		m.log.Error("quarantine: remove approval of a message not held", "msg", id, "err", err)
	}
}

// afterHold mails the links of a message just held: the sender's notice
// (hold) or the approvers' requests (approve). A failure here never fails
// the hold: it is logged (and the notifier audits what it could not send).
func (m *Manager) afterHold(ctx context.Context, it Item, held pipeline.Held, prep *flowPrep) {
	if m.acts == nil || m.notify == nil {
		return
	}
	switch it.Action {
	case policies.Hold:
		m.notifyHold(ctx, it)
	case policies.Approve:
		m.requestApproval(ctx, it, held, prep)
	}
}

func (m *Manager) notifyHold(ctx context.Context, it Item) {
	if it.From == "" || notify.CheckAddress(it.From) != nil {
		return // the null sender (or one we cannot mail) is never told
	}
	links, err := newLinks(it.From, TicketCancel, TicketSendNow)
	if err == nil {
		err = m.acts.insertFlow(ctx, it.ID, string(policies.Hold), "[]", it.ReleaseAt, 0, m.now(), links)
	}
	if err != nil {
		m.log.Error("quarantine: sender control links not recorded; the hold goes on without them", "msg", it.ID, "err", err)
		return
	}
	sum := m.summarize(it, false)
	data := mailtmpl.HeldData{Sender: it.From, Recipients: it.To, Subject: sum.Subject, Files: sum.Files,
		ReleaseAt: it.ReleaseAt, CancelURL: m.acts.url(links[0].token), SendNowURL: m.acts.url(links[1].token)}
	if err := m.notify.Send(ctx, notify.Notice{Kind: "held", To: []string{it.From}, Data: data,
		About: it.ID, Expires: it.ReleaseAt}); err != nil {
		m.log.Error("quarantine: hold notice not sent", "msg", it.ID, "err", err)
	}
}

func (m *Manager) requestApproval(ctx context.Context, it Item, held pipeline.Held, prep *flowPrep) {
	sum := m.summarize(it, false)
	var sent []string
	for i := 0; i+2 < len(prep.links); i += 3 {
		view, approve, reject := prep.links[i], prep.links[i+1], prep.links[i+2]
		data := mailtmpl.ApprovalData{Sender: it.From, Recipients: it.To, Subject: sum.Subject, Files: sum.Files,
			Rule: it.Rule, Deadline: prep.deadline, ViewURL: m.acts.url(view.token),
			ApproveURL: m.acts.url(approve.token), RejectURL: m.acts.url(reject.token)}
		if err := m.notify.Send(ctx, notify.Notice{Kind: "approval", To: []string{view.party}, Data: data,
			About: it.ID, Expires: prep.deadline}); err != nil {
			m.log.Error("quarantine: approval request not sent", "msg", it.ID, "approver", view.party, "err", err)
			continue
		}
		sent = append(sent, view.party)
	}
	e := m.event(audit.TypeApprovalRequested, "smtp", it)
	e.ClientAddr = it.ClientAddr
	e.Reason = it.Rule
	e.Expires = prep.deadline
	e.Detail = "approvers=" + strings.Join(held.Approvers, ",") + " requested=" + strings.Join(sent, ",") +
		" timeout=" + prep.timeout.String()
	if err := m.audit.Record(ctx, e); err != nil {
		m.log.Error("quarantine: audit approval.requested failed", "msg", it.ID, "err", err)
	}
}

func (a *actions) url(token string) string { return a.baseURL + "/h/" + token }

// Ticket looks a link up; it changes nothing (mail scanners open links).
// An unknown token is ErrTokenUnknown; otherwise the Ticket's State says
// whether it can act. An open view link carries the message's text.
func (m *Manager) Ticket(ctx context.Context, token string) (Ticket, error) {
	if m.acts == nil {
		return Ticket{}, ErrTokenUnknown
	}
	if token == "" || len(token) > maxTokenLen {
		return Ticket{}, ErrTokenUnknown
	}
	t, err := m.acts.ticket(ctx, store.HashToken(token))
	if err != nil {
		return Ticket{}, err
	}
	it, err := m.settle(ctx, &t)
	if err != nil || t.State != TicketOpen {
		return t, err
	}
	sum := m.summarize(it, t.Kind == TicketView)
	t.Sender, t.Recipients, t.Subject, t.Files = it.From, it.To, sum.Subject, sum.Files
	if t.Kind == TicketView {
		t.Header, t.Text, t.TextTruncated = sum.Header, sum.Text, sum.TextTruncated
	}
	return t, nil
}

// settle works out the state of t, which the database row left open, and
// returns the held item when it is still open.
func (m *Manager) settle(ctx context.Context, t *Ticket) (Item, error) {
	switch {
	case !t.UsedAt.IsZero():
		t.State = TicketUsed
		return Item{}, nil
	case t.Decision == decisionGone:
		t.State = TicketGone
		return Item{}, nil
	case t.Decision != "":
		t.State = TicketDecided
		return Item{}, nil
	}
	it, err := m.Get(ctx, t.ItemID)
	if errors.Is(err, ErrNotFound) {
		t.State = TicketGone
		return Item{}, nil
	}
	if err != nil {
		return Item{}, err
	}
	if !m.now().Before(t.Deadline) {
		t.State = TicketExpired
		return Item{}, nil
	}
	t.State = TicketOpen
	return it, nil
}

// Act carries out what the link token does, once: Cancel deletes the held
// message, Send now releases it, Approve releases it, Reject rejects it
// with reason (a DSN to the sender). It returns the Ticket as decided.
// A link that cannot act gives ErrTicketClosed; a view link
// ErrNotAnAction. A release the next hop did not take returns the
// Ticket with a *DeliveryError: after Approve, the message stays approved
// and is retried; after Send now, it stays held (and both sender links
// keep working).
func (m *Manager) Act(ctx context.Context, token, reason string) (Ticket, error) {
	if m.acts == nil || token == "" || len(token) > maxTokenLen {
		return Ticket{}, ErrTokenUnknown
	}
	hash := store.HashToken(token)
	t, err := m.acts.ticket(ctx, hash)
	if err != nil {
		return Ticket{}, err
	}
	if t.Kind == TicketView {
		return t, ErrNotAnAction
	}
	if _, err := m.settle(ctx, &t); err != nil {
		return t, err
	}
	if t.State != TicketOpen {
		return t, ErrTicketClosed
	}
	reason = cleanReason(reason)
	decision := map[TicketKind]string{TicketCancel: DecisionCancelled, TicketSendNow: DecisionSent,
		TicketApprove: DecisionApproved, TicketReject: DecisionRejected}[t.Kind]
	now := m.now()
	ok, err := m.acts.decide(ctx, hash, t.ItemID, decision, t.Party, reason, now)
	if err != nil {
		return t, err
	}
	if !ok {
		// Someone else was faster: show what they did.
		t2, err := m.acts.ticket(ctx, hash)
		if err != nil {
			return t, err
		}
		_, _ = m.settle(ctx, &t2)
		return t2, ErrTicketClosed
	}
	t.Decision, t.DecidedBy, t.DecidedAt, t.Reason, t.UsedAt = decision, t.Party, now, reason, now
	switch t.Kind {
	case TicketCancel, TicketSendNow:
		return m.actSender(ctx, t, hash)
	default:
		return m.actApprover(ctx, t)
	}
}

// actSender carries out Cancel or Send now. If the message cannot be
// deleted or released right now, the decision is undone: the sender can
// try again, and the hold goes on as before.
func (m *Manager) actSender(ctx context.Context, t Ticket, hash []byte) (Ticket, error) {
	actor := "sender:" + t.Party
	var (
		res Result
		err error
		typ audit.EventType
	)
	if t.Kind == TicketCancel {
		res, err = m.Delete(ctx, t.ItemID, actor)
		typ = audit.TypeHoldCancelled
	} else {
		res, err = m.Release(ctx, t.ItemID, actor)
		typ = audit.TypeHoldSentNow
	}
	if err != nil && !errors.Is(err, ErrUnaudited) {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
		defer cancel()
		if uerr := m.acts.undo(bctx, hash, t.ItemID); uerr != nil {
			m.log.Error("quarantine: undo sender decision", "msg", t.ItemID, "err", uerr)
		}
		t.Decision, t.DecidedBy, t.DecidedAt, t.UsedAt = "", "", time.Time{}, time.Time{}
		if errors.Is(err, ErrNotFound) {
			t.State = TicketGone
			return t, ErrTicketClosed
		}
		return t, err
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	m.acts.done(bctx, t.ItemID, m.now(), m.log)
	e := m.event(typ, actor, res.Item)
	e.ClientAddr = res.Item.ClientAddr
	e.Reply = res.Reply
	e.Detail = "release_at=" + res.Item.ReleaseAt.Format(time.RFC3339)
	if err := m.audit.Record(bctx, e); err != nil {
		m.log.Error("quarantine: audit failed", "type", typ, "msg", t.ItemID, "err", err)
	}
	t.State = TicketDecided
	return t, nil
}

// actApprover carries out Approve or Reject. The decision is on record
// (approval.approved or approval.rejected) before it is carried out; if
// carrying it out fails, runActions tries again.
func (m *Manager) actApprover(ctx context.Context, t Ticket) (Ticket, error) {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	it, err := m.Get(bctx, t.ItemID)
	if err != nil {
		return t, err
	}
	typ := audit.TypeApprovalApproved
	if t.Kind == TicketReject {
		typ = audit.TypeApprovalRejected
	}
	actor := "approver:" + t.Party
	e := m.event(typ, actor, it)
	e.ClientAddr = it.ClientAddr
	e.Reason = t.Reason
	if err := m.audit.Record(bctx, e); err != nil {
		// Not on record: not decided.
		if uerr := m.acts.undo(bctx, t.TokenHash, t.ItemID); uerr != nil {
			m.log.Error("quarantine: undo approver decision", "msg", t.ItemID, "err", uerr)
		}
		return t, fmt.Errorf("quarantine: audit %s: %w", typ, err)
	}
	t.State = TicketDecided
	return t, m.carryOut(ctx, it, t.Decision, t.Party, t.Reason)
}

// carryOut does what an approval decision says about the held item it.
func (m *Manager) carryOut(ctx context.Context, it Item, decision, by, reason string) error {
	switch decision {
	case DecisionApproved:
		res, err := m.Release(ctx, it.ID, "approver:"+by)
		if err != nil && !errors.Is(err, ErrUnaudited) {
			return err
		}
		m.doneWith(ctx, it.ID)
		if it.From != "" && m.notify != nil {
			data := mailtmpl.ApprovalResultData{Subject: m.subjectOf(it), Recipients: it.To, Approver: by, DecidedAt: res.At}
			if err := m.notify.Send(ctx, notify.Notice{Kind: "approval-result", To: []string{it.From},
				Data: data, About: it.ID}); err != nil {
				m.log.Error("quarantine: approval result not sent", "msg", it.ID, "err", err)
			}
		}
		return nil
	case DecisionRejected, DecisionExpired:
		actor, why := "approver:"+by, "rejected by approver "+by
		if decision == DecisionExpired {
			actor, why = audit.ActorSystem, "not approved within "+reason
		} else if reason != "" {
			why += ": " + reason
		}
		_, err := m.Reject(ctx, it.ID, actor, clipReason(why))
		if err != nil && !errors.Is(err, ErrUnaudited) {
			return err
		}
		m.doneWith(ctx, it.ID)
		return nil
	}
	return fmt.Errorf("quarantine: unknown decision %q", decision)
}

func (m *Manager) doneWith(ctx context.Context, id string) {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	m.acts.done(bctx, id, m.now(), m.log)
}

// runActions expires approvals nobody decided by their deadline, carries
// out decisions a crash or a failed release left undone, and forgets
// links long closed, until ctx ends.
func (m *Manager) runActions(ctx context.Context) {
	if m.acts == nil {
		return
	}
	for {
		m.actionsDue(ctx)
		wait := m.interval
		if next, ok := m.acts.nextDeadline(ctx); ok {
			wait = min(wait, max(next.Sub(m.now()), minWait))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-m.acts.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// actionsDue is one pass of runActions.
func (m *Manager) actionsDue(ctx context.Context) {
	now := m.now()
	due, err := m.acts.expiredApprovals(ctx, now)
	if err != nil {
		m.log.Error("quarantine: approvals due", "err", err)
	}
	for _, f := range due {
		if ctx.Err() != nil {
			return
		}
		it, err := m.Get(ctx, f.id)
		if errors.Is(err, ErrNotFound) {
			// Released or deleted by an admin meanwhile.
			if _, err := m.acts.decide(ctx, nil, f.id, decisionGone, audit.ActorSystem, "", now); err != nil {
				m.log.Error("quarantine: close approval", "msg", f.id, "err", err)
			}
			m.acts.done(ctx, f.id, now, m.log)
			continue
		}
		if err != nil {
			m.log.Error("quarantine: approval due", "msg", f.id, "err", err)
			continue
		}
		reason := f.timeout.String()
		ok, err := m.acts.decide(ctx, nil, f.id, DecisionExpired, audit.ActorSystem, reason, now)
		if err != nil || !ok {
			continue
		}
		e := m.event(audit.TypeApprovalExpired, audit.ActorSystem, it)
		e.ClientAddr = it.ClientAddr
		e.Reason = "not approved within " + reason
		if err := m.audit.Record(ctx, e); err != nil {
			m.log.Error("quarantine: audit approval.expired failed", "msg", f.id, "err", err)
		}
		if err := m.carryOut(ctx, it, DecisionExpired, audit.ActorSystem, reason); err != nil {
			m.log.Warn("quarantine: expired approval not carried out yet", "msg", f.id, "err", err)
		}
	}
	undone, err := m.acts.undone(ctx, now.Add(-retryDecided))
	if err != nil {
		m.log.Error("quarantine: decisions not carried out", "err", err)
	}
	for _, f := range undone {
		if ctx.Err() != nil {
			return
		}
		it, err := m.Get(ctx, f.id)
		if errors.Is(err, ErrNotFound) {
			m.acts.done(ctx, f.id, now, m.log)
			continue
		}
		if err != nil {
			continue
		}
		if f.decision == DecisionApproved && !it.LastAttemptAt.IsZero() && now.Before(it.LastAttemptAt.Add(backoff(it.Attempts))) {
			continue
		}
		if f.decision == DecisionExpired {
			f.reason = f.timeout.String()
		}
		if err := m.carryOut(ctx, it, f.decision, f.decidedBy, f.reason); err != nil {
			m.log.Warn("quarantine: decision not carried out yet", "msg", f.id, "decision", f.decision, "err", err)
		}
	}
	if err := m.acts.purge(ctx, now.Add(-keepClosed)); err != nil {
		m.log.Error("quarantine: purge closed links", "err", err)
	}
}

// summary is what the pages and notices show of a held message.
type summary struct {
	Subject       string
	Files         []string
	Header        [][2]string
	Text          string
	TextTruncated bool
}

// viewHeaders are the header fields the view page shows, in this order.
var viewHeaders = []string{"From", "To", "Cc", "Date", "Subject"}

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// decodeField decodes RFC 2047 words and keeps the value on one line.
func decodeField(v string) string {
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		v = d
	}
	return oneLine(strings.ToValidUTF8(v, "\uFFFD"))
}

func oneLine(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s))
}

// summarize reads the held message once, streaming: its subject, the
// names of its files and, with text, the header fields of viewHeaders and
// the start of its first text/plain part that is not a file. A message
// that cannot be read gives what was read before the failure.
func (m *Manager) summarize(it Item, text bool) summary {
	var s summary
	rd, err := m.blobs.Open(it.ID, it.KeyID)
	if err != nil {
		m.log.Error("quarantine: open held message", "msg", it.ID, "err", err)
		return s
	}
	defer rd.Close()
	gotText := false
	sum, err := mailpart.Walk(rd, mailpart.Limits{}, func(p *mailpart.Part, body io.Reader) error {
		if p.Attachment {
			if len(s.Files) < maxFilesShown {
				s.Files = append(s.Files, p.Filename)
			}
			return nil
		}
		if !text || gotText || p.MediaType != "text/plain" {
			return nil
		}
		gotText = true
		dec, err := charset.Reader(p.Params["charset"], body)
		if err != nil || p.Params["charset"] == "" {
			dec = body
		}
		b, err := io.ReadAll(io.LimitReader(dec, maxViewText+1))
		if err != nil {
			return nil // shown as far as it was read
		}
		if len(b) > maxViewText {
			b, s.TextTruncated = b[:maxViewText], true
			for len(b) > 0 && !utf8.Valid(b) && !utf8.RuneStart(b[len(b)-1]) {
				b = b[:len(b)-1]
			}
		}
		s.Text = strings.ToValidUTF8(strings.ReplaceAll(string(b), "\r\n", "\n"), "\uFFFD")
		return nil
	})
	if err != nil {
		m.log.Warn("quarantine: read held message", "msg", it.ID, "err", err)
	}
	s.Subject = decodeField(sum.Header.Get("Subject"))
	if text {
		for _, name := range viewHeaders {
			for _, v := range sum.Header.Values(name) {
				s.Header = append(s.Header, [2]string{name, decodeField(v)})
			}
		}
	}
	return s
}

// subjectOf reads only the subject of a held message's header.
func (m *Manager) subjectOf(it Item) string {
	rd, err := m.blobs.Open(it.ID, it.KeyID)
	if err != nil {
		return ""
	}
	defer rd.Close()
	sum, _ := mailpart.Walk(io.LimitReader(rd, 1<<20), mailpart.Limits{}, func(*mailpart.Part, io.Reader) error {
		return errStopWalk
	})
	return decodeField(sum.Header.Get("Subject"))
}

var errStopWalk = errors.New("stop")

// cleanReason keeps an approver's reason to one line of bounded UTF-8.
func cleanReason(s string) string {
	s = oneLine(strings.ToValidUTF8(s, "\uFFFD"))
	if len(s) > maxActionReason {
		s = s[:maxActionReason]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// releaseReason is the reason of mail.released for a release by actor.
func releaseReason(actor string) string {
	switch {
	case actor == audit.ActorSystem:
		return ReasonHoldExpired
	case strings.HasPrefix(actor, "sender:"):
		return "sent now by sender"
	case strings.HasPrefix(actor, "approver:"):
		return "approved"
	}
	return ReasonAdmin
}

// deleteReason is the reason of mail.deleted for a deletion by actor.
func deleteReason(actor string) string {
	if strings.HasPrefix(actor, "sender:") {
		return "cancelled by sender"
	}
	return ReasonAdmin
}

// --- the database side ---

func (a *sqliteActions) insertFlow(ctx context.Context, id, kind, approvers string, deadline time.Time, timeout time.Duration, now time.Time, links []link) error {
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record links: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO quarantine_flows (item_id, kind, approvers, deadline, timeout, created_at)
		VALUES (?, ?, ?, ?, ?, ?)`, id, kind, approvers, deadline.UnixNano(), int64(timeout), now.UnixNano()); err != nil {
		return fmt.Errorf("record links: %w", err)
	}
	for _, l := range links {
		if _, err := tx.ExecContext(ctx, `INSERT INTO quarantine_actions (token_hash, item_id, kind, party, expires_at)
			VALUES (?, ?, ?, ?, ?)`, l.hash, id, string(l.kind), l.party, deadline.UnixNano()); err != nil {
			return fmt.Errorf("record links: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record links: %w", err)
	}
	return nil
}

func (a *sqliteActions) deleteFlow(ctx context.Context, id string) error {
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM quarantine_actions WHERE item_id = ?`, id); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM quarantine_flows WHERE item_id = ?`, id); err != nil {
		return err
	}
	return tx.Commit()
}

func (a *sqliteActions) ticket(ctx context.Context, hash []byte) (Ticket, error) {
	var (
		t                          Ticket
		kind                       string
		expires                    int64
		used, decidedAt            sql.NullInt64
		decision, decidedBy, reaso string
	)
	err := a.db.QueryRowContext(ctx, `SELECT a.kind, a.item_id, a.party, a.expires_at, a.used_at,
			f.decision, f.decided_by, f.decided_at, f.reason
		FROM quarantine_actions a JOIN quarantine_flows f ON f.item_id = a.item_id
		WHERE a.token_hash = ?`, hash).Scan(&kind, &t.ItemID, &t.Party, &expires, &used,
		&decision, &decidedBy, &decidedAt, &reaso)
	if errors.Is(err, sql.ErrNoRows) {
		return Ticket{}, ErrTokenUnknown
	}
	if err != nil {
		return Ticket{}, fmt.Errorf("quarantine: look up link: %w", err)
	}
	t.Kind, t.TokenHash = TicketKind(kind), hash
	t.Deadline = time.Unix(0, expires).UTC()
	if used.Valid {
		t.UsedAt = time.Unix(0, used.Int64).UTC()
	}
	t.Decision, t.DecidedBy, t.Reason = decision, decidedBy, reaso
	if decidedAt.Valid {
		t.DecidedAt = time.Unix(0, decidedAt.Int64).UTC()
	}
	return t, nil
}

// decide takes the decision about item id if nobody has, and uses the
// link hash (nil: the system decides). It reports whether it decided.
func (a *sqliteActions) decide(ctx context.Context, hash []byte, id, decision, by, reason string, now time.Time) (bool, error) {
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("quarantine: decide: %w", err)
	}
	defer tx.Rollback()
	if hash != nil {
		res, err := tx.ExecContext(ctx, `UPDATE quarantine_actions SET used_at = ? WHERE token_hash = ? AND used_at IS NULL`,
			now.UnixNano(), hash)
		if err != nil {
			return false, fmt.Errorf("quarantine: use link: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return false, nil
		}
	}
	res, err := tx.ExecContext(ctx, `UPDATE quarantine_flows SET decision = ?, decided_by = ?, decided_at = ?, reason = ?
		WHERE item_id = ? AND decision = ''`, decision, by, now.UnixNano(), reason, id)
	if err != nil {
		return false, fmt.Errorf("quarantine: decide: %w", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return false, nil
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("quarantine: decide: %w", err)
	}
	return true, nil
}

// undo takes back a decision that could not be carried out.
func (a *sqliteActions) undo(ctx context.Context, hash []byte, id string) error {
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE quarantine_actions SET used_at = NULL WHERE token_hash = ?`, hash); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE quarantine_flows SET decision = '', decided_by = '', decided_at = NULL, reason = ''
		WHERE item_id = ?`, id); err != nil {
		return err
	}
	return tx.Commit()
}

func (a *sqliteActions) done(ctx context.Context, id string, now time.Time, log interface{ Error(string, ...any) }) {
	if _, err := a.db.ExecContext(ctx, `UPDATE quarantine_flows SET done_at = ? WHERE item_id = ? AND done_at IS NULL`,
		now.UnixNano(), id); err != nil {
		log.Error("quarantine: mark decision carried out", "msg", id, "err", err)
	}
}

type flowRow struct {
	id, decision, decidedBy, reason string
	timeout                         time.Duration
}

func (a *sqliteActions) expiredApprovals(ctx context.Context, now time.Time) ([]flowRow, error) {
	return a.flows(ctx, `SELECT item_id, decision, decided_by, reason, timeout FROM quarantine_flows
		WHERE kind = 'approve' AND decision = '' AND deadline <= ? ORDER BY deadline`, now.UnixNano())
}

func (a *sqliteActions) undone(ctx context.Context, decidedBefore time.Time) ([]flowRow, error) {
	return a.flows(ctx, `SELECT item_id, decision, decided_by, reason, timeout FROM quarantine_flows
		WHERE kind = 'approve' AND decision IN ('approved', 'rejected', 'expired') AND done_at IS NULL
		AND decided_at <= ? ORDER BY decided_at`, decidedBefore.UnixNano())
}

func (a *sqliteActions) flows(ctx context.Context, query string, args ...any) ([]flowRow, error) {
	rows, err := a.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []flowRow
	for rows.Next() {
		var f flowRow
		var timeout int64
		if err := rows.Scan(&f.id, &f.decision, &f.decidedBy, &f.reason, &timeout); err != nil {
			return nil, err
		}
		f.timeout = time.Duration(timeout)
		out = append(out, f)
	}
	return out, rows.Err()
}

func (a *sqliteActions) nextDeadline(ctx context.Context) (time.Time, bool) {
	var ns sql.NullInt64
	err := a.db.QueryRowContext(ctx, `SELECT MIN(deadline) FROM quarantine_flows WHERE kind = 'approve' AND decision = ''`).Scan(&ns)
	if err != nil || !ns.Valid {
		return time.Time{}, false
	}
	return time.Unix(0, ns.Int64), true
}

// purge forgets links and flows closed before the given time.
func (a *sqliteActions) purge(ctx context.Context, before time.Time) error {
	b := before.UnixNano()
	if _, err := a.db.ExecContext(ctx, `DELETE FROM quarantine_actions WHERE item_id IN (
		SELECT item_id FROM quarantine_flows WHERE (done_at IS NOT NULL AND done_at < ?) OR
			(kind = 'hold' AND deadline < ?))`, b, b); err != nil {
		return err
	}
	_, err := a.db.ExecContext(ctx, `DELETE FROM quarantine_flows WHERE (done_at IS NOT NULL AND done_at < ?) OR
		(kind = 'hold' AND deadline < ?)`, b, b)
	return err
}

// clipReason keeps a rejection reason within what Reject takes (maxReason
// bytes), cut at a character boundary: an approver's long reason in
// Japanese must not make the rejection fail.
func clipReason(s string) string {
	if len(s) <= maxReason {
		return s
	}
	cut := maxReason - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
