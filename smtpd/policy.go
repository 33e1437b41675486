package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/mailpart"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/quarantine"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

// This file is the pipeline's decide step and the way in and out of the
// quarantine.
//
// Every attachment is decided by the policies while the walk streams it.
// Rules without a size condition decide before the body is read
// (policies.Engine.Early). When a rule with a size condition could match
// first, the part is streamed into the vault as if it were to be linked,
// and decided with its size afterwards: link keeps the blob, keep deletes it
// (Rewrite then copies the part raw from the spool), a message-level action
// deletes it. Once a message-level action is known, later parts are only
// counted, not stored. A reject ends the walk at once.

// Holder keeps messages a policy holds; *quarantine.Manager is one.
type Holder interface {
	// Hold stores the message read from msg durably (encrypted) and
	// records mail.held; on error nothing of it is kept.
	Hold(ctx context.Context, it quarantine.Item, msg io.Reader) (quarantine.Item, error)
}

// messageSource reopens a message from its start: the spool of an SMTP
// transaction, or the blob of a held message.
type messageSource interface {
	Open() (io.ReadCloser, error)
}

// errRefusedByPolicy stops the walk of a message a rule rejects.
var errRefusedByPolicy = errors.New("refused by policy")

// decideAttachment applies the policies to one attachment; link stores a
// blob already put into the vault as a linked file.
func (p *Pipeline) decideAttachment(st *stored, env policies.Envelope, part *mailpart.Part, body io.Reader,
	link func(part *mailpart.Part, fileID string, info vault.BlobInfo) error) error {
	pp := policies.PartOf(part)
	d, final := st.settings.Policies.Early(env, pp)
	if final {
		action := p.effective(st, d)
		switch {
		case action == policies.Keep:
			return nil
		case action.MessageLevel():
			return p.messageLevel(st, d)
		case st.verdict.MessageLevel():
			return nil // the message is not relayed now: nothing to link
		}
		fileID := store.NewID()
		info, err := p.Blobs.Put(fileID, body)
		if err != nil {
			return fmt.Errorf("store attachment %s: %w", part.Path, err)
		}
		return link(part, fileID, info)
	}

	// A rule with a size condition may decide: the size is known only
	// after the body went by.
	if st.verdict.MessageLevel() {
		n, err := io.Copy(io.Discard, body)
		if err != nil {
			return fmt.Errorf("read attachment %s: %w", part.Path, err)
		}
		pp.Size = n
		if d := st.settings.Policies.Decide(env, pp); p.effective(st, d).MessageLevel() {
			return p.messageLevel(st, d)
		}
		return nil
	}
	fileID := store.NewID()
	info, err := p.Blobs.Put(fileID, body)
	if err != nil {
		return fmt.Errorf("store attachment %s: %w", part.Path, err)
	}
	pp.Size = info.Size
	d = st.settings.Policies.Decide(env, pp)
	action := p.effective(st, d)
	if action == policies.Link {
		return link(part, fileID, info)
	}
	// Streamed only to learn the size: the blob goes again.
	p.deleteBlobs([]store.File{{ID: fileID}})
	if action.MessageLevel() {
		return p.messageLevel(st, d)
	}
	return nil // keep
}

// effective is the action a decision has for this message: a released
// message is neither held nor refused again, so a part whose rule held the
// message is linked then.
func (p *Pipeline) effective(st *stored, d policies.Decision) policies.Action {
	if st.release && d.Action.MessageLevel() {
		return policies.Link
	}
	return d.Action
}

// messageLevel takes a reject, quarantine or hold into the verdict; a
// reject ends the walk.
func (p *Pipeline) messageLevel(st *stored, d policies.Decision) error {
	st.verdict.Add(d)
	if d.Action == policies.Reject {
		return errRefusedByPolicy
	}
	return nil
}

// refusedReply is the client's reply to a message a rule rejects: a policy
// verdict, so a 5xx.
func refusedReply(rule string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Message refused by policy " + rule}
}

// decided finishes a message with a message-level verdict: refused with
// 550 5.7.1, or held in the quarantine (250 only once it is durable).
// Nothing is relayed; the session resets the next hop's transaction.
func (p *Pipeline) decided(ctx context.Context, msgID string, env Envelope, sp *vault.Spool, st *stored, size int64, log *slog.Logger) (string, error) {
	if err := p.recordStored(ctx, env, st, size); err != nil {
		return "", err
	}
	v := st.verdict
	if v.Action == policies.Reject {
		reply := refusedReply(v.Rule)
		log.Info("refused by policy", "rule", v.Rule, "size", size, "rcpts", len(env.To))
		if err := p.record(context.WithoutCancel(ctx), audit.Event{Type: audit.TypeMailRejected, Actor: "smtp",
			ClientAddr: env.ClientAddr, MessageID: msgID, HeaderID: st.header, Sender: env.From,
			Recipients: env.To, Reason: v.Rule, Reply: fmt.Sprintf("%d %d.%d.%d %s", reply.Code,
				reply.EnhancedCode[0], reply.EnhancedCode[1], reply.EnhancedCode[2], reply.Message)}); err != nil {
			return "", err
		}
		return "", reply
	}
	if p.Quarantine == nil {
		err := fmt.Errorf("policy %s holds the message (%s), but no quarantine is configured", v.Rule, v.Action)
		p.recordOutcome(msgID, env, err, log)
		return "", err
	}
	rd, err := sp.Open()
	if err != nil {
		err = fmt.Errorf("read spool: %w", err)
		p.recordOutcome(msgID, env, err, log)
		return "", err
	}
	defer rd.Close()
	it, err := p.Quarantine.Hold(ctx, quarantine.Item{ID: msgID, HeaderID: st.header, From: env.From, To: env.To,
		ClientAddr: env.ClientAddr, Helo: env.Helo, AuthUser: env.AuthUser, TLS: env.TLS, UTF8: env.UTF8,
		Size: size, Action: v.Action, Rule: v.Rule}, rd)
	if err != nil {
		p.recordOutcome(msgID, env, err, log)
		return "", err
	}
	log.Info("held by policy", "rule", v.Rule, "action", v.Action, "size", size, "release_at", it.ReleaseAt)
	return quarantine.HeldReply(it.ID), nil
}

// Deliver sends a held message on (quarantine.Deliverer): the pipeline runs
// again on the held blob, with the policies' per-part actions and links made
// now, so their expiry counts from delivery; hop has MAIL and every RCPT
// accepted. The Received field keeps the time the message came in.
func (p *Pipeline) Deliver(ctx context.Context, it quarantine.Item, msg quarantine.Source, hop relay.Session, actor string) (string, error) {
	now := p.now()
	env := Envelope{From: it.From, To: it.To, ClientAddr: it.ClientAddr, Helo: it.Helo, AuthUser: it.AuthUser,
		TLS: it.TLS, UTF8: it.UTF8}
	log := p.Logger.With("msg", it.ID, "from", it.From, "release", actor)

	stopKeepAlive := p.keepAlive(hop, log)
	st, err := p.storeAttachments(ctx, it.ID, env, msg, now, true)
	if kaErr := stopKeepAlive(); err == nil && kaErr != nil {
		p.rollback(st, log)
		return "", &quarantine.DeliveryError{Op: "NOOP", Err: kaErr}
	}
	if err != nil {
		return "", err
	}
	st.actor = actor
	if err := p.recordStored(ctx, env, st, it.Size); err != nil {
		p.rollback(st, log)
		return "", err
	}
	reply, err := p.relay(it.ID, env, msg, st, hop, it.HeldAt.Local())
	if err != nil {
		p.rollback(st, log)
		var he *hopError
		var se *smtp.SMTPError
		switch {
		case errors.As(err, &he):
			return "", &quarantine.DeliveryError{Op: he.op, Err: he.err}
		case errors.As(err, &se):
			return "", &quarantine.DeliveryError{Op: "DATA", Err: se}
		}
		return "", err
	}
	log.Info("released and relayed", "size", it.Size, "rcpts", len(env.To), "files", len(st.files), "reply", reply)
	if err := p.record(context.WithoutCancel(ctx), audit.Event{Type: audit.TypeMailRelayed, Actor: actor,
		ClientAddr: env.ClientAddr, MessageID: it.ID, HeaderID: st.header, Sender: env.From,
		Recipients: env.To, Size: it.Size, Reply: "250 " + reply}); err != nil {
		log.Error("audit mail.relayed failed", "err", err)
	}
	return reply, nil
}
