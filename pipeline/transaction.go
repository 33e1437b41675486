package pipeline

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/dkim"
	"github.com/attachgate/attachgate/mailpart"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/smtpreply"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

// Transaction owns one message from its body to the final reply (maddy's
// module.Delivery is the model). Body receives the message and runs the
// stages:
//
//   - check: the policies decide every attachment while the MIME walk
//     streams it (decide.go);
//   - store: linked attachments go encrypted into the vault, the message,
//     its files and links into the store, its arrival, files and links
//     into the audit log;
//   - rewrite and deliver: the message goes to the next hop with a notice
//     and links in place of the linked attachments, or into the
//     quarantine, or is refused.
//
// Then exactly one of Commit (the message is relayed or held) or Abort
// (anything else) ends it; calling either again does nothing. Only Abort
// rolls back, and it records the outcome (mail.rejected or mail.deferred),
// so every exit is on record. A Transaction is for one goroutine.
type Transaction struct {
	p     *Pipeline
	id    string
	env   Envelope
	hop   relay.Session
	log   *slog.Logger
	start time.Time // links expire from here
	// receivedAt is the time of our Received field.
	receivedAt time.Time
	// actor of the events this transaction records.
	actor string
	// decide applies the policies to one attachment.
	decide decider
	// engine is the policies snapshot of this message: on_infected, and
	// the link options of the rule that linked each file (linkopts.go).
	engine *policies.Engine
	// releasing: a held message going out (malware fails the release
	// instead of holding it again).
	releasing bool
	// scanEvents are the scan verdicts (scan.go), recorded with the
	// message's records or its outcome.
	scanEvents []audit.Event
	// infected is the first malware signature found ("" none).
	infected string
	// opts are the message-level link options gathered from those rules.
	opts messageOptions
	// dkim signs the final message (dkim.go); settings snapshot at Begin.
	dkim *dkim.Keys
	// fromDomain is the domain of the From header, the DKIM signing
	// domain ("" unless exactly one From field names one domain).
	fromDomain string
	// arrival is recorded with the files and links (mail.received); nil
	// when the message's arrival is on record already (a release).
	arrival *audit.Event
	// mayHold: the policies of this message can hold it (quarantine,
	// hold rules), so it is spooled whole before the walk.
	mayHold bool
	// outcomes: Abort records mail.rejected or mail.deferred. A release
	// leaves that to its caller, which keeps the message held.
	outcomes bool

	spool   *vault.Spool
	side    *lazySpool // cut attachment bodies (one pass)
	src     Source
	size    int64
	stopKA  func() error // keep-alive of the idle next hop
	files   []store.File
	links   []store.Link
	remove  map[string]bool // MIME paths of the linked parts
	notice  mailpart.Notice
	header  string // the Message-ID header
	subject string // decoded Subject (audited only with LogSubjects)
	verdict policies.Verdict
	// parts are the attachments decided so far, for the mail rules.
	parts   []policies.Part
	inStore bool   // message, files and links are in the store
	reason  string // why refused (the policy rule)
	reply   string // the final reply text after 250
	relayed bool   // the next hop accepted the message
	ended   bool

	// Observability hook (summary.go).
	began       time.Time // monotonic start, for the duration
	attachments int       // attachment parts the walk saw
	atHop       bool      // DATA went to the next hop: its reply is the verdict
}

// Begin starts the transaction of a message received over SMTP.
func (p *Pipeline) Begin(ctx context.Context, env Envelope, hop relay.Session) *Transaction {
	now := p.now()
	set := p.current() // policies and DKIM keys, fixed for this message
	t := &Transaction{p: p, id: store.NewID(), env: env, hop: hop, start: now, receivedAt: now,
		actor: "smtp", decide: smtpDecider{set.Policies}, engine: set.Policies, dkim: set.DKIM, outcomes: true, remove: map[string]bool{},
		mayHold: set.Policies.HasAction(policies.Quarantine) || set.Policies.HasAction(policies.Hold) ||
			set.Policies.HasAction(policies.Approve)}
	t.log = p.logger().With("msg", t.id, "from", env.From)
	t.began = time.Now() // observability hook
	t.arrival = &audit.Event{Type: audit.TypeMailReceived, Actor: "smtp", ClientAddr: env.ClientAddr,
		Helo: env.Helo, AuthUser: env.AuthUser, MessageID: t.id, Sender: env.From, Recipients: env.To}
	return t
}

func (p *Pipeline) beginRelease(ctx context.Context, m Released, hop relay.Session) *Transaction {
	set := p.current()
	t := &Transaction{p: p, id: m.ID, env: m.Env, hop: hop, start: p.now(), receivedAt: m.ReceivedAt.Local(),
		actor: m.Actor, decide: releaseDecider{set.Policies}, engine: set.Policies, releasing: true, dkim: set.DKIM,
		remove: map[string]bool{}}
	t.log = p.logger().With("msg", m.ID, "from", m.Env.From, "release", m.Actor)
	return t
}

// ID is attachgate's ID of the message (store.Message.ID, the audit log's
// message_id, the id in our Received field).
func (t *Transaction) ID() string { return t.id }

// Body receives the message from r (always consumed) and runs the stages
// up to the final reply. When Body returns nil the message was relayed or
// held and Commit must follow; otherwise Abort. The next hop waits idle
// meanwhile and gets a NOOP every Pipeline.KeepAlive.
//
// The message is read once: the MIME walk reads it from r, attachments to
// be linked go from there into the vault (decoded, hashed, encrypted in
// one stream), and only what stays in the message goes into the
// encrypted spool, from which it is rewritten to the next hop. When a
// policy may hold messages (quarantine, hold), a held message must be
// kept whole: then the whole message is spooled first and walked from the
// spool.
func (t *Transaction) Body(ctx context.Context, r io.Reader) error {
	sp, err := vault.NewSpool(t.p.SpoolDir)
	if err != nil {
		io.Copy(io.Discard, r)
		return fmt.Errorf("open spool: %w", err)
	}
	t.spool = sp
	// Postfix drops an idle client after 300 s: keep the next hop from
	// timing out on large mail over slow links.
	t.stopKA = t.p.keepAlive(t.hop, t.log)
	if t.mayHold {
		size, err := io.CopyBuffer(sp, r, make([]byte, copyBufferSize))
		if err != nil {
			// go-smtp's size limit error is an *smtp.SMTPError (552
			// 5.3.4); anything else is the client going away.
			return fmt.Errorf("receive message: %w", err)
		}
		if err := sp.Close(); err != nil {
			return fmt.Errorf("spool message: %w", err)
		}
		return t.run(ctx, sp, size, nil)
	}
	cr := &countingReader{r: r}
	side := &lazySpool{dir: t.p.SpoolDir}
	t.side = side
	err = t.run(ctx, sp, 0, func(fn func(*mailpart.Part, io.Reader) error) (mailpart.Summary, error) {
		sum, cuts, err := mailpart.WalkTee(cr, t.p.Limits, sp, side, t.elide, fn)
		if err == nil {
			err = sp.Close()
		}
		if err == nil {
			err = side.close()
		}
		t.size = cr.n
		if err == nil && side.sp != nil && (sum.PassThrough(t.env.From == "") != "" || t.verdict.MessageLevel()) {
			// Goes on (or is held) untouched after all: with the cut
			// bodies put back (none: cuts of empty bodies only).
			t.src = splicedSource{copy: sp, side: side.sp, cuts: cuts}
		}
		return sum, err
	})
	if cr.err == nil {
		// A refusal or a failure ended the walk early: the client's DATA
		// is read to its end all the same.
		n, _ := io.Copy(io.Discard, r)
		t.size += n
	}
	return err
}

// lazySpool is the spool of the attachment bodies the one-pass walk cuts
// out of the message: created on the first cut, read back only when the
// message must go on untouched (mailpart.Summary.PassThrough), removed
// with the transaction.
type lazySpool struct {
	dir string
	sp  *vault.Spool
}

func (l *lazySpool) Write(p []byte) (int, error) {
	if l.sp == nil {
		sp, err := vault.NewSpool(l.dir)
		if err != nil {
			return 0, err
		}
		l.sp = sp
	}
	return l.sp.Write(p)
}

func (l *lazySpool) close() error {
	if l.sp == nil {
		return nil
	}
	return l.sp.Close()
}

func (l *lazySpool) remove() error {
	if l.sp == nil {
		return nil
	}
	return l.sp.Remove()
}

// splicedSource reads the whole message back from the one-pass copy and
// the cut bodies.
type splicedSource struct {
	copy, side *vault.Spool
	cuts       []mailpart.Cut
}

func (s splicedSource) Open() (io.ReadCloser, error) {
	c, err := s.copy.Open()
	if err != nil {
		return nil, err
	}
	sd, err := s.side.Open()
	if err != nil {
		c.Close()
		return nil, err
	}
	return splicedReader{Reader: mailpart.Spliced(c, sd, s.cuts), closers: []io.Closer{c, sd}}, nil
}

type splicedReader struct {
	io.Reader
	closers []io.Closer
}

func (r splicedReader) Close() error {
	var errs []error
	for _, c := range r.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// countingReader counts the message's bytes and keeps the read error.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// elide tells the one-pass walk which attachments' bodies stay out of the
// spool: those the policies link without looking at their size (exactly
// the ones decideAttachment puts into the vault before reading them).
func (t *Transaction) elide(part *mailpart.Part) bool {
	if t.verdict.MessageLevel() || t.env.From == "" {
		// A bounce goes on untouched (mailpart.PassNullSender).
		return false
	}
	d, final := t.decide.Early(policies.Envelope{From: t.env.From, To: t.env.To}, policies.PartOf(part))
	return final && d.Action == policies.Link
}

// walkFunc runs the MIME walk with fn for every leaf part.
type walkFunc func(fn func(*mailpart.Part, io.Reader) error) (mailpart.Summary, error)

// run is the stages after the body: src is where the message (or what of
// it stays) can be reread; walk, when not nil, reads the body itself,
// filling src on the way.
func (t *Transaction) run(ctx context.Context, src Source, size int64, walk walkFunc) error {
	t.src, t.size = src, size // walk may replace src
	if t.stopKA == nil {
		t.stopKA = t.p.keepAlive(t.hop, t.log)
	}
	if walk == nil {
		walk = func(fn func(*mailpart.Part, io.Reader) error) (mailpart.Summary, error) {
			rd, err := src.Open()
			if err != nil {
				return mailpart.Summary{}, fmt.Errorf("read spool: %w", err)
			}
			defer rd.Close()
			return mailpart.Walk(rd, t.p.Limits, fn)
		}
	}
	err := t.store(ctx, walk)
	if kaErr := t.stopKeepAlive(); err == nil && kaErr != nil {
		return &relay.Error{Op: "NOOP", Err: kaErr}
	}
	if err != nil {
		return err
	}
	if err := t.record(ctx); err != nil {
		return err
	}
	switch v := t.verdict; {
	case v.Action == policies.Reject && strings.HasPrefix(v.Rule, MalwareRule):
		t.reason = v.Rule
		t.log.Info("refused: malware", "signature", t.infected, "size", t.size, "rcpts", len(t.env.To))
		return smtpreply.Infected(t.infected)
	case v.Action == policies.Reject:
		t.reason = v.Rule
		t.log.Info("refused by policy", "rule", v.Rule, "size", t.size, "rcpts", len(t.env.To))
		return smtpreply.Refused(v.Rule)
	case v.MessageLevel():
		return t.hold(ctx)
	}
	return t.deliver(ctx)
}

func (t *Transaction) stopKeepAlive() error {
	if t.stopKA == nil {
		return nil
	}
	return t.stopKA()
}

// store is the check stage and the vault half of the store stage: one
// walk of the message decides every attachment by policy (decide.go) and
// puts those to be linked into the vault.
func (t *Transaction) store(ctx context.Context, walk walkFunc) error {
	penv := policies.Envelope{From: t.env.From, To: t.env.To, AuthUser: t.env.AuthUser}
	sum, err := walk(func(part *mailpart.Part, body io.Reader) error {
		if !part.Attachment {
			return nil
		}
		return t.decideAttachment(ctx, penv, part, body)
	})
	if errors.Is(err, errRefusedByPolicy) {
		err = nil // the rest of a refused message needs no look
	}
	if err != nil {
		return err
	}
	if len(t.env.RequireTenant) > 0 {
		if reason := checkTenant(sum.Header, t.env.RequireTenant); reason != "" {
			// Another Microsoft 365 customer's mail: nothing of it is
			// kept, and it is refused before anything is recorded.
			t.p.deleteBlobs(t.files, t.log)
			t.files, t.links, t.notice.Files = nil, nil, nil
			clear(t.remove)
			t.header = strings.TrimSpace(sum.MessageID)
			t.reason = reason
			t.log.Warn("relay denied: not a configured Microsoft 365 tenant", "reason", reason,
				"network", t.env.Microsoft365Network)
			return smtpreply.NotTenant
		}
	}
	// Signed or encrypted mail, reports, automatic replies and bounces are
	// relayed untouched (mailpart.Summary.PassThrough): nothing is linked.
	// Their own rules may still refuse or hold them; the attachment rules'
	// reject, quarantine and hold above stand.
	if sum.PassThrough(t.env.From == "") != "" {
		if d := t.decide.Message(penv, policies.MessageOf(sum)); d.Action.MessageLevel() {
			t.verdict.Add(d)
		}
		t.p.deleteBlobs(t.files, t.log)
		t.files, t.links, t.notice.Files = nil, nil, nil
		clear(t.remove)
	}
	// Mail rules look at the whole message, with or without attachments.
	if t.verdict.Action != policies.Reject {
		t.verdict.Add(t.decide.Mail(penv, policies.MailOf(sum, t.parts)))
	}
	if t.verdict.MessageLevel() {
		// Neither relayed nor linked now: whatever was stored goes.
		t.p.deleteBlobs(t.files, t.log)
		t.files, t.links, t.notice.Files = nil, nil, nil
		clear(t.remove)
	}
	t.header = strings.TrimSpace(sum.MessageID)
	t.attachments = sum.Attachments // observability hook
	if froms := sum.Header.Values("From"); len(froms) == 1 {
		t.fromDomain = dkim.FromDomain(froms[0])
	}
	raw := sum.Header.Get("Subject")
	if dec, err := subjectDecoder.DecodeHeader(raw); err == nil {
		raw = dec
	}
	t.subject = raw
	return t.messageTokens()
}

// link makes a blob already in the vault a linked file of the message,
// with the link options of the rule that decided it (d.Rule).
func (t *Transaction) link(part *mailpart.Part, fileID string, info vault.BlobInfo, d policies.Decision) error {
	token, hash, err := store.NewToken()
	if err != nil {
		t.p.deleteBlobs([]store.File{{ID: fileID}}, t.log)
		return fmt.Errorf("new token: %w", err)
	}
	o := t.linkOptions(d.Rule)
	expires := t.start.Add(o.expiry).Truncate(time.Second)
	f := store.File{ID: fileID, MessageID: t.id, Name: part.Filename, ContentType: part.MediaType,
		Size: info.Size, SHA256: info.SHA256, KeyID: info.KeyID, CreatedAt: t.start, ExpiresAt: expires}
	l := store.Link{ID: store.NewID(), FileID: fileID, TokenHash: hash, CreatedAt: t.start, ExpiresAt: expires,
		MaxDownloads: o.maxDownloads}
	t.files = append(t.files, f)
	t.links = append(t.links, l)
	t.remove[part.Path] = true
	t.notice.Files = append(t.notice.Files, mailpart.NoticeFile{Name: f.Name, Size: f.Size,
		SHA256: f.SHA256, Expires: expires.In(t.p.Location), URL: t.p.BaseURL + "/d/" + token})
	return nil
}

// record is the rest of the store stage: the message, its files and links
// go into the store, and its arrival, files and links into the audit log;
// in one transaction shared with concurrent messages when both live in the
// same SQLite database (group commit: one fsync for many messages).
func (t *Transaction) record(ctx context.Context) error {
	var events []audit.Event
	if t.arrival != nil {
		e := *t.arrival
		e.HeaderID, e.Size = t.header, t.size
		// Who allowed the relay: the auth user is its own field, a
		// trusted network goes into Detail.
		var detail []string
		if t.env.TrustedNetwork != "" {
			detail = append(detail, "trusted network "+t.env.TrustedNetwork)
		}
		if len(t.env.RequireTenant) > 0 {
			detail = append(detail, "microsoft365 network "+t.env.Microsoft365Network)
		}
		if t.p.LogSubjects && t.subject != "" {
			detail = append(detail, "subject: "+t.subject)
		}
		e.Detail = strings.Join(detail, "; ")
		events = append(events, e)
	}
	events = append(events, t.scanVerdicts()...)
	for i, f := range t.files {
		l := t.links[i]
		events = append(events,
			audit.Event{Type: audit.TypeFileStored, Actor: t.actor, ClientAddr: t.env.ClientAddr, MessageID: t.id,
				HeaderID: t.header, Sender: t.env.From, FileID: f.ID, FileName: f.Name, LinkID: l.ID,
				ContentType: f.ContentType, Size: f.Size, SHA256: f.SHA256},
			audit.Event{Type: audit.TypeLinkCreated, Actor: t.actor, MessageID: t.id, HeaderID: t.header,
				Sender: t.env.From, Recipients: t.env.To, FileID: f.ID, FileName: f.Name, LinkID: l.ID,
				Expires: l.ExpiresAt})
	}
	if len(t.files) == 0 {
		if len(events) == 0 {
			return nil
		}
		if err := audit.RecordAll(ctx, t.p.Audit, events); err != nil {
			return fmt.Errorf("audit %s: %w", events[0].Type, err)
		}
		t.scanEvents = nil
		return nil
	}
	msg := store.Message{ID: t.id, MessageID: t.header, Sender: t.env.From, Recipients: t.env.To,
		ClientAddr: t.env.ClientAddr, AuthUser: t.env.AuthUser, CreatedAt: t.start,
		Subject: boundSubject(t.subject), Lang: t.opts.lang, Verify: t.opts.verify, NotifySender: t.opts.notify,
		PageTokenHash: t.opts.pageHash, ManageTokenHash: t.opts.manageHash}
	if st, al, check, ok := t.p.sharedDB(); ok {
		if err := check(); err != nil {
			return fmt.Errorf("record message: %w", err)
		}
		err := al.RecordWith(ctx, events, func(ctx context.Context, conn *sql.Conn) error {
			// The blobs' names become durable with their records: the
			// first message of a group commit syncs the directories of
			// all of them.
			if err := t.p.Blobs.SyncPending(); err != nil {
				return err
			}
			return st.CreateMessageTx(ctx, conn, msg, t.files, t.links)
		})
		if err != nil {
			return fmt.Errorf("record message: %w", err)
		}
		t.inStore, t.scanEvents = true, nil
		return nil
	}
	if err := t.p.Blobs.SyncPending(); err != nil {
		return fmt.Errorf("record message: %w", err)
	}
	if err := t.p.Store.CreateMessage(ctx, msg, t.files, t.links); err != nil {
		return fmt.Errorf("record message: %w", err)
	}
	t.inStore = true
	if err := audit.RecordAll(ctx, t.p.Audit, events); err != nil {
		return fmt.Errorf("audit %s: %w", events[0].Type, err)
	}
	t.scanEvents = nil
	return nil
}

// hold is the deliver stage of a message a policy holds: into the
// quarantine, 250 only once it is durable.
func (t *Transaction) hold(ctx context.Context) error {
	v := t.verdict
	if t.p.Quarantine == nil {
		return fmt.Errorf("policy %s holds the message (%s), but no quarantine is configured", v.Rule, v.Action)
	}
	rd, err := t.src.Open()
	if err != nil {
		return fmt.Errorf("read spool: %w", err)
	}
	defer rd.Close()
	reply, err := t.p.Quarantine.Hold(ctx, Held{ID: t.id, HeaderID: t.header, Env: t.env, Size: t.size,
		Action: v.Action, Rule: v.Rule, HoldFor: v.HoldFor, Approvers: v.Approvers,
		ApprovalTimeout: v.ApprovalTimeout}, rd)
	if err != nil {
		return err
	}
	t.log.Info("held by policy", "rule", v.Rule, "action", v.Action, "size", t.size)
	t.reply = reply
	return nil
}

// deliver is the rewrite and deliver stages: the message goes to the next
// hop, rewritten when something was linked, byte for byte otherwise; with
// a DKIM key for its From domain, signed over exactly those bytes.
func (t *Transaction) deliver(ctx context.Context) error {
	rd, err := t.src.Open()
	if err != nil {
		return fmt.Errorf("read spool: %w", err)
	}
	defer rd.Close()

	t.atHop = true // observability hook
	// DKIM (dkim.go): the final bytes go to a second encrypted spool and
	// are signed there before DATA; then signature and spool go out.
	var signed *signedMessage
	if key := t.dkim.For(t.fromDomain); key != nil {
		if signed, err = t.signFinal(key, rd); err != nil {
			return err
		}
		defer signed.remove()
	}

	dw, err := t.hop.Data()
	if err != nil {
		return relay.Failed("DATA", err)
	}
	bw := bufio.NewWriterSize(dw, copyBufferSize)
	if signed != nil {
		err = signed.writeTo(bw)
	} else {
		err = t.writeFinal(bw, rd)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		// A half-sent message must not be accepted: closing the data
		// writer would end it with a dot, so drop the connection instead.
		t.hop.Close()
		if errors.Is(err, mailpart.ErrTooComplex) {
			return err
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se
		}
		return &relay.Error{Op: "DATA", Err: err}
	}
	reply, err := dw.Close()
	if err != nil {
		return relay.Failed("end of DATA", err)
	}
	t.reply, t.relayed = reply, true
	return nil
}

// writeFinal writes the message as it goes to the next hop: our Received
// field, then the message unchanged (its line ends made CRLF; mailpart: a
// bare CR becomes a space) when nothing was linked, rewritten otherwise.
func (t *Transaction) writeFinal(w io.Writer, rd io.Reader) error {
	if _, err := io.WriteString(w, t.p.receivedHeader(t.id, t.env, t.receivedAt)); err != nil {
		return err
	}
	if len(t.files) == 0 {
		_, err := mailpart.CopyPassThrough(w, rd)
		return err
	}
	t.notice.EightBit = t.hop.EightBitMIME()
	return mailpart.Rewrite(rd, w, t.p.Limits, t.remove, t.notice)
}

// Commit ends a transaction whose Body succeeded: the message was relayed
// (mail.relayed is recorded) or held. It returns the reply text after 250.
func (t *Transaction) Commit(ctx context.Context) string {
	if t.ended {
		return t.reply
	}
	t.ended = true
	defer t.removeSpool()
	defer t.summarize(nil) // observability hook
	if !t.relayed {
		return t.reply // held: mail.held is on record
	}
	// The info line is the hook's "message" line (summary.go).
	t.log.Debug("relayed", "size", t.size, "rcpts", len(t.env.To), "files", len(t.files), "reply", t.reply)
	e := audit.Event{Type: audit.TypeMailRelayed, Actor: t.actor, ClientAddr: t.env.ClientAddr, MessageID: t.id,
		HeaderID: t.header, Sender: t.env.From, Recipients: t.env.To, Size: t.size, Reply: "250 " + t.reply}
	log := t.log
	failed := func(err error) {
		// The next hop has the mail: failing now would make the client
		// send it twice. Log loudly instead.
		if err != nil {
			log.Error("audit mail.relayed failed", "err", err)
		}
	}
	if a, ok := t.p.Audit.(appender); ok {
		// Durable with the next group commit: the next hop has the mail
		// and saw its links, nothing waits for this record.
		a.Append([]audit.Event{e}, failed)
	} else {
		failed(t.p.Audit.Record(context.WithoutCancel(ctx), e))
	}
	// Only now, the next hop having accepted the mail: the sender's
	// receipt with the manage link (linkopts.go).
	t.sendReceipt(ctx)
	return t.reply
}

// appender is an audit log that records without making the caller wait
// (audit.SQLiteLog).
type appender interface {
	Append(events []audit.Event, then func(error))
}

// Abort ends a transaction that failed with err, which it returns: what
// was stored goes (message, files, links, blobs), and the outcome is
// recorded, mail.rejected for a 5xx (a policy, 552 too large, 554 too
// complex, the next hop's refusal), mail.deferred for anything else.
func (t *Transaction) Abort(err error) error {
	if t.ended {
		return err
	}
	t.ended = true
	defer t.removeSpool()
	defer t.summarize(err) // observability hook
	t.stopKeepAlive()
	t.rollback()
	if t.outcomes {
		t.recordOutcome(err)
	} else {
		t.recordScans()
	}
	return err
}

// recordScans records the scan verdicts of a transaction whose outcome
// its caller records (a release).
func (t *Transaction) recordScans() {
	ev := t.scanVerdicts()
	if len(ev) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), outcomeTimeout)
	defer cancel()
	if err := audit.RecordAll(ctx, t.p.Audit, ev); err != nil {
		t.log.Error("audit scan verdicts failed", "err", err)
	}
}

func (t *Transaction) rollback() {
	if len(t.files) == 0 {
		return
	}
	if t.inStore {
		ctx, cancel := context.WithTimeout(context.Background(), outcomeTimeout)
		defer cancel()
		if _, err := t.p.Store.DeleteMessage(ctx, t.id); err != nil && !errors.Is(err, store.ErrNotFound) {
			t.log.Error("rollback: delete message", "err", err)
		}
	}
	t.p.deleteBlobs(t.files, t.log)
	t.log.Info("rolled back", "files", len(t.files))
}

// recordOutcome audits a failed transaction as rejected (5xx) or deferred.
func (t *Transaction) recordOutcome(err error) {
	typ, reply := audit.TypeMailDeferred, err.Error()
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &se):
		reply = smtpreply.Format(se)
		if smtpreply.Permanent(se) {
			typ = audit.TypeMailRejected
		}
	case errors.Is(err, mailpart.ErrTooComplex):
		typ, reply = audit.TypeMailRejected, smtpreply.Format(smtpreply.TooComplex)
	}
	ctx, cancel := context.WithTimeout(context.Background(), outcomeTimeout)
	defer cancel()
	events := append(t.scanVerdicts(), audit.Event{Type: typ, Actor: t.actor, ClientAddr: t.env.ClientAddr,
		MessageID: t.id, HeaderID: t.header, Sender: t.env.From, Recipients: t.env.To, Reason: t.reason,
		Reply: reply})
	if aerr := audit.RecordAll(ctx, t.p.Audit, events); aerr != nil {
		t.log.Error("audit outcome failed", "type", typ, "err", aerr)
	}
}

func (t *Transaction) removeSpool() {
	if t.spool != nil {
		if err := t.spool.Remove(); err != nil {
			t.log.Warn("remove spool", "err", err)
		}
	}
	if t.side != nil {
		if err := t.side.remove(); err != nil {
			t.log.Warn("remove spool", "err", err)
		}
	}
}
