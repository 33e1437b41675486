package smtpd

import (
	"bufio"
	"context"
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
	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/dkim"
	"github.com/attachgate/attachgate/mailpart"
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
}

// Pipeline drives one message: spool (encrypted), walk and store its
// attachments, rewrite, relay, and roll back on any failure.
type Pipeline struct {
	Hostname string
	SpoolDir string
	Store    store.Store
	Blobs    *vault.BlobStore
	Audit    audit.Recorder
	Limits   mailpart.Limits
	BaseURL  string        // links.base_url, no trailing slash
	Expiry   time.Duration // links.default_expiry
	Language string        // notice language: en, ja, both
	Location *time.Location
	// LogSubjects puts the Subject into mail.received (audit.log_subjects);
	// off by default, subjects being personal data.
	LogSubjects bool
	// Policies decide per attachment (decide step, policy.go); nil links
	// every attachment.
	Policies *policies.Engine
	// Quarantine keeps the messages a policy holds (quarantine, hold);
	// nil: such a verdict is a temporary failure.
	Quarantine Holder
	// DKIM signs the final message for the domain of its From header
	// (dkim.go); nil signs nothing.
	DKIM *dkim.Keys
	// KeepAlive is how often the idle next-hop session gets a NOOP while
	// a message is received and stored; 0 means 60 s.
	KeepAlive time.Duration
	Now       func() time.Time
	Logger    *slog.Logger

	settings atomic.Pointer[Settings] // set by Reload
}

// Settings are what a configuration reload (SIGHUP) changes while mail
// flows. A message uses one snapshot from its first step to its last.
type Settings struct {
	Policies *policies.Engine
	DKIM     *dkim.Keys
}

// Reload makes s the settings of the messages that start from now on;
// messages in flight finish with the ones they started with.
func (p *Pipeline) Reload(s Settings) { p.settings.Store(&s) }

// current is the last Reload, else the Policies and DKIM fields.
func (p *Pipeline) current() Settings {
	if s := p.settings.Load(); s != nil {
		return *s
	}
	return Settings{Policies: p.Policies, DKIM: p.DKIM}
}

const (
	copyBufferSize   = 64 << 10
	defaultKeepAlive = 60 * time.Second
)

// subjectDecoder decodes RFC 2047 words in any charset go-message knows.
var subjectDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// stored is a message after its attachments went into the vault.
type stored struct {
	msg     store.Message
	files   []store.File
	links   []store.Link
	remove  map[string]bool
	notice  mailpart.Notice
	header  string // the Message-ID header
	subject string // decoded Subject, kept only with LogSubjects
	// fromDomain is the domain of the From header, the DKIM signing
	// domain ("" when there is not exactly one From with one domain).
	fromDomain string
	// settings: the policies and DKIM keys this message uses throughout.
	settings Settings

	// verdict is the decide step's message-level outcome (policy.go).
	verdict policies.Verdict
	// release: a held message going out; it is neither held nor refused
	// again, and mail.received is not recorded twice.
	release bool
	actor   string // of file and link events; "" = smtp
}

// Process takes the message from r, relays it through hop and returns the
// next hop's reply text; the error is nil only when the next hop accepted
// the message. r is always consumed.
func (p *Pipeline) Process(ctx context.Context, env Envelope, r io.Reader, hop relay.Session) (string, error) {
	now := p.now()
	msgID := store.NewID()
	log := p.Logger.With("msg", msgID, "from", env.From)

	sp, err := vault.NewSpool(p.SpoolDir)
	if err != nil {
		io.Copy(io.Discard, r)
		return "", fmt.Errorf("open spool: %w", err)
	}
	defer sp.Remove()
	// The next hop waits idle while we receive and store; keep it from
	// timing out (Postfix drops an idle client after 300 s) on large mail
	// over slow links.
	stopKeepAlive := p.keepAlive(hop, log)
	buf := make([]byte, copyBufferSize)
	size, err := io.CopyBuffer(sp, r, buf)
	if err != nil {
		stopKeepAlive()
		// go-smtp's size limit error is an *smtp.SMTPError (552 5.3.4);
		// anything else is the client going away.
		return "", fmt.Errorf("receive message: %w", err)
	}
	if err := sp.Close(); err != nil {
		stopKeepAlive()
		return "", fmt.Errorf("spool message: %w", err)
	}

	st, err := p.storeAttachments(ctx, msgID, env, sp, now, false)
	if kaErr := stopKeepAlive(); err == nil && kaErr != nil {
		p.rollback(st, log)
		return "", &hopError{op: "NOOP", err: kaErr}
	}
	if err != nil {
		return "", err
	}
	if st.verdict.MessageLevel() {
		// A policy refused or held the whole message: nothing is relayed.
		return p.decided(ctx, msgID, env, sp, st, size, log)
	}
	if err := p.recordStored(ctx, env, st, size); err != nil {
		p.rollback(st, log)
		return "", err
	}

	reply, err := p.relay(msgID, env, sp, st, hop, now)
	if err != nil {
		p.rollback(st, log)
		p.recordOutcome(msgID, env, err, log)
		return "", err
	}
	log.Info("relayed", "size", size, "rcpts", len(env.To), "files", len(st.files), "reply", reply)
	if err := p.record(context.WithoutCancel(ctx), audit.Event{Type: "mail.relayed", Actor: "smtp",
		ClientAddr: env.ClientAddr, MessageID: msgID, HeaderID: st.header, Sender: env.From,
		Recipients: env.To, Size: size, Reply: "250 " + reply}); err != nil {
		// The next hop has the mail: failing now would make the client
		// send it twice. Log loudly instead.
		log.Error("audit mail.relayed failed", "err", err)
	}
	return reply, nil
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

// storeAttachments walks the message once, decides every attachment by
// policy (policy.go) and puts those to be linked into the vault, then
// records message, files and links. src is the spool, or a held message
// being released (release: message-level verdicts no longer apply).
func (p *Pipeline) storeAttachments(ctx context.Context, msgID string, env Envelope, src messageSource, now time.Time, release bool) (*stored, error) {
	rd, err := src.Open()
	if err != nil {
		return nil, fmt.Errorf("read spool: %w", err)
	}
	defer rd.Close()

	st := &stored{remove: map[string]bool{}, release: release, settings: p.current()}
	expires := now.Add(p.Expiry).Truncate(time.Second)
	penv := policies.Envelope{From: env.From, To: env.To}
	link := func(part *mailpart.Part, fileID string, info vault.BlobInfo) error {
		token, hash, err := store.NewToken()
		if err != nil {
			p.Blobs.Delete(fileID)
			return fmt.Errorf("new token: %w", err)
		}
		f := store.File{ID: fileID, MessageID: msgID, Name: part.Filename, ContentType: part.MediaType,
			Size: info.Size, SHA256: info.SHA256, KeyID: info.KeyID, CreatedAt: now, ExpiresAt: expires}
		l := store.Link{ID: store.NewID(), FileID: fileID, TokenHash: hash, CreatedAt: now, ExpiresAt: expires}
		st.files = append(st.files, f)
		st.links = append(st.links, l)
		st.remove[part.Path] = true
		st.notice.Files = append(st.notice.Files, mailpart.NoticeFile{Name: f.Name, Size: f.Size,
			SHA256: f.SHA256, Expires: expires.In(p.Location), URL: p.BaseURL + "/d/" + token})
		return nil
	}
	sum, err := mailpart.Walk(rd, p.Limits, func(part *mailpart.Part, body io.Reader) error {
		if !part.Attachment {
			return nil
		}
		return p.decideAttachment(st, penv, part, body, link)
	})
	if errors.Is(err, errRefusedByPolicy) {
		err = nil // the rest of a refused message needs no look
	}
	if err != nil {
		p.deleteBlobs(st.files)
		return nil, err
	}
	if st.verdict.MessageLevel() {
		// Neither relayed nor linked now: whatever was stored goes.
		p.deleteBlobs(st.files)
		st.files, st.links, st.notice.Files = nil, nil, nil
		clear(st.remove)
	}
	st.header = strings.TrimSpace(sum.MessageID)
	if froms := sum.Header.Values("From"); len(froms) == 1 {
		st.fromDomain = dkim.FromDomain(froms[0])
	}
	if p.LogSubjects {
		raw := sum.Header.Get("Subject")
		if dec, err := subjectDecoder.DecodeHeader(raw); err == nil {
			raw = dec
		}
		st.subject = raw
	}
	st.notice.Language = p.Language
	st.msg = store.Message{ID: msgID, MessageID: st.header, Sender: env.From, Recipients: env.To,
		ClientAddr: env.ClientAddr, AuthUser: env.AuthUser, CreatedAt: now}
	if len(st.files) == 0 {
		return st, nil
	}
	if err := p.Store.CreateMessage(ctx, st.msg, st.files, st.links); err != nil {
		p.deleteBlobs(st.files)
		return nil, fmt.Errorf("record message: %w", err)
	}
	return st, nil
}

// recordStored audits the message's arrival, then each file and link.
func (p *Pipeline) recordStored(ctx context.Context, env Envelope, st *stored, size int64) error {
	events := []audit.Event{{Type: "mail.received", Actor: "smtp", ClientAddr: env.ClientAddr,
		Helo: env.Helo, AuthUser: env.AuthUser, MessageID: st.msg.ID, HeaderID: st.header,
		Sender: env.From, Recipients: env.To, Size: size}}
	// Who allowed the relay: the auth user is its own field, a trusted
	// network goes into Detail.
	var detail []string
	if env.TrustedNetwork != "" {
		detail = append(detail, "trusted network "+env.TrustedNetwork)
	}
	if st.subject != "" {
		detail = append(detail, "subject: "+st.subject)
	}
	events[0].Detail = strings.Join(detail, "; ")
	if st.release {
		events = events[:0] // recorded when the message was held
	}
	actor := st.actor
	if actor == "" {
		actor = "smtp"
	}
	for i, f := range st.files {
		l := st.links[i]
		events = append(events,
			audit.Event{Type: "file.stored", Actor: actor, ClientAddr: env.ClientAddr, MessageID: st.msg.ID,
				HeaderID: st.header, Sender: env.From, FileID: f.ID, FileName: f.Name, LinkID: l.ID,
				ContentType: f.ContentType, Size: f.Size, SHA256: f.SHA256},
			audit.Event{Type: "link.created", Actor: actor, MessageID: st.msg.ID, HeaderID: st.header,
				Sender: env.From, Recipients: env.To, FileID: f.ID, FileName: f.Name, LinkID: l.ID,
				Expires: l.ExpiresAt})
	}
	if err := audit.RecordAll(ctx, p.Audit, events); err != nil {
		return fmt.Errorf("audit mail.received: %w", err)
	}
	return nil
}

// relay sends the (rewritten) message and returns the next hop's reply.
func (p *Pipeline) relay(msgID string, env Envelope, src messageSource, st *stored, hop relay.Session, now time.Time) (string, error) {
	rd, err := src.Open()
	if err != nil {
		return "", fmt.Errorf("read spool: %w", err)
	}
	defer rd.Close()

	// DKIM (dkim.go): with a key for the From domain the final bytes are
	// written to a second encrypted spool and signed there before DATA;
	// below, signature and spool go out instead of writeFinal.
	var signed *signedMessage
	if key := st.settings.DKIM.For(st.fromDomain); key != nil {
		if signed, err = p.signFinal(key, rd, msgID, env, st, hop, now); err != nil {
			return "", err
		}
		defer signed.remove()
	}

	dw, err := hop.Data()
	if err != nil {
		return "", hopErr("DATA", err)
	}
	bw := bufio.NewWriterSize(dw, copyBufferSize)
	if signed != nil {
		err = signed.writeTo(bw) // DKIM-Signature, then the final message
	} else {
		err = p.writeFinal(bw, rd, msgID, env, st, hop, now)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		// A half-sent message must not be accepted: closing the data
		// writer would end it with a dot, so drop the connection instead.
		hop.Close()
		if errors.Is(err, mailpart.ErrTooComplex) {
			return "", err
		}
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return "", se
		}
		return "", &hopError{op: "DATA", err: err}
	}
	reply, err := dw.Close()
	if err != nil {
		return "", hopErr("end of DATA", err)
	}
	return reply, nil
}

// writeFinal writes the message as it goes to the next hop: our Received
// field, then the message byte for byte (nothing linked) or rewritten.
func (p *Pipeline) writeFinal(w io.Writer, rd io.Reader, msgID string, env Envelope, st *stored, hop relay.Session, now time.Time) error {
	if _, err := io.WriteString(w, p.receivedHeader(msgID, env, now)); err != nil {
		return err
	}
	if len(st.files) == 0 {
		_, err := io.CopyBuffer(w, rd, make([]byte, copyBufferSize))
		return err
	}
	st.notice.EightBit = hop.EightBitMIME()
	return mailpart.Rewrite(rd, w, p.Limits, st.remove, st.notice)
}

// hopErr keeps the next hop's replies and marks everything else as a
// transport failure.
func hopErr(op string, err error) error {
	if isTransportError(err) {
		return &hopError{op: op, err: err}
	}
	return err
}

// receivedHeader is our trace field (RFC 5321 section 4.4).
func (p *Pipeline) receivedHeader(msgID string, env Envelope, now time.Time) string {
	with := "ESMTP"
	if env.TLS {
		with += "S"
	}
	if env.AuthUser != "" {
		with += "A"
	}
	helo := sanitizeHeaderWord(env.Helo)
	return fmt.Sprintf("Received: from %s ([%s])\r\n\tby %s (attachgate) with %s id %s;\r\n\t%s\r\n",
		helo, env.ClientAddr, p.Hostname, with, msgID, now.Format(time.RFC1123Z))
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

func (p *Pipeline) rollback(st *stored, log *slog.Logger) {
	if len(st.files) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.Store.DeleteMessage(ctx, st.msg.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		log.Error("rollback: delete message", "err", err)
	}
	p.deleteBlobs(st.files)
	log.Info("rolled back", "files", len(st.files))
}

func (p *Pipeline) deleteBlobs(files []store.File) {
	for _, f := range files {
		if err := p.Blobs.Delete(f.ID); err != nil {
			p.Logger.Error("rollback: delete blob", "file", f.ID, "err", err)
		}
	}
}

// recordOutcome audits a failed relay as rejected (5xx) or deferred.
func (p *Pipeline) recordOutcome(msgID string, env Envelope, err error, log *slog.Logger) {
	typ, reply := "mail.deferred", err.Error()
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		reply = fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
		if se.Code >= 500 {
			typ = "mail.rejected"
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if aerr := p.record(ctx, audit.Event{Type: typ, Actor: "smtp", ClientAddr: env.ClientAddr,
		MessageID: msgID, Sender: env.From, Recipients: env.To, Reply: reply}); aerr != nil {
		log.Error("audit outcome failed", "err", aerr)
	}
}

func (p *Pipeline) record(ctx context.Context, e audit.Event) error {
	if err := p.Audit.Record(ctx, e); err != nil {
		return fmt.Errorf("audit %s: %w", e.Type, err)
	}
	return nil
}

func (p *Pipeline) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}
