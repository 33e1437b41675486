package pipeline

import (
	"errors"
	"fmt"
	"io"

	"github.com/attachgate/attachgate/mailpart"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/store"
)

// This file is the check stage: every attachment is decided by the
// policies while the walk streams it.
//
// Rules without a size condition decide before the body is read
// (policies.Engine.Early). When a rule with a size condition could match
// first, the part is streamed into the vault as if it were to be linked,
// and decided with its size afterwards: link keeps the blob, keep deletes it
// (Rewrite then copies the part raw from the spool), a message-level action
// deletes it. Once a message-level action is known, later parts are only
// counted, not stored. A reject ends the walk at once.

// errRefusedByPolicy stops the walk of a message a rule rejects.
var errRefusedByPolicy = errors.New("refused by policy")

// decider is how a transaction applies the policies: a message received
// over SMTP takes every action (smtpDecider); a held message being
// released is neither held nor refused again (releaseDecider).
type decider interface {
	Early(env policies.Envelope, p policies.Part) (policies.Decision, bool)
	Decide(env policies.Envelope, p policies.Part) policies.Decision
	// Message decides a message that passes through untouched (signed,
	// encrypted): its own rules may still refuse or hold it.
	Message(env policies.Envelope, m policies.Message) policies.Decision
	// Mail decides the whole message once it has been walked (mail
	// rules: sender, subject, external recipients...).
	Mail(env policies.Envelope, m policies.Mail) policies.Decision
}

type smtpDecider struct{ e *policies.Engine }

func (d smtpDecider) Early(env policies.Envelope, p policies.Part) (policies.Decision, bool) {
	return d.e.Early(env, p)
}

func (d smtpDecider) Decide(env policies.Envelope, p policies.Part) policies.Decision {
	return d.e.Decide(env, p)
}

func (d smtpDecider) Message(env policies.Envelope, m policies.Message) policies.Decision {
	return d.e.DecideMessage(env, m)
}

func (d smtpDecider) Mail(env policies.Envelope, m policies.Mail) policies.Decision {
	return d.e.DecideMail(env, m)
}

// releaseDecider links a part whose rule held the message: the message was
// held once already.
type releaseDecider struct{ e *policies.Engine }

func (d releaseDecider) Early(env policies.Envelope, p policies.Part) (policies.Decision, bool) {
	dec, final := d.e.Early(env, p)
	return released(dec), final
}

func (d releaseDecider) Decide(env policies.Envelope, p policies.Part) policies.Decision {
	return released(d.e.Decide(env, p))
}

func (d releaseDecider) Message(env policies.Envelope, m policies.Message) policies.Decision {
	return released(d.e.DecideMessage(env, m))
}

func (d releaseDecider) Mail(env policies.Envelope, m policies.Mail) policies.Decision {
	return released(d.e.DecideMail(env, m))
}

func released(d policies.Decision) policies.Decision {
	if d.Action.MessageLevel() {
		d.Action = policies.Link
	}
	return d
}

// decideAttachment applies the policies to one attachment and stores those
// to be linked.
func (t *Transaction) decideAttachment(env policies.Envelope, part *mailpart.Part, body io.Reader) error {
	pp := policies.PartOf(part)
	d, final := t.decide.Early(env, pp)
	if final {
		switch {
		case d.Action == policies.Keep, d.Action.MessageLevel(), t.verdict.MessageLevel():
			// Not stored: its size stays unknown to the mail rules.
			t.parts = append(t.parts, pp)
		}
		switch {
		case d.Action == policies.Keep:
			return nil
		case d.Action.MessageLevel():
			return t.messageLevel(d)
		case t.verdict.MessageLevel():
			return nil // the message is not relayed now: nothing to link
		}
		fileID := store.NewID()
		info, err := t.p.Blobs.PutUnsynced(fileID, body)
		if err != nil {
			return fmt.Errorf("store attachment %s: %w", part.Path, err)
		}
		pp.Size = info.Size
		t.parts = append(t.parts, pp)
		return t.link(part, fileID, info)
	}

	// A rule with a size condition may decide: the size is known only
	// after the body went by.
	if t.verdict.MessageLevel() {
		n, err := io.Copy(io.Discard, body)
		if err != nil {
			return fmt.Errorf("read attachment %s: %w", part.Path, err)
		}
		pp.Size = n
		t.parts = append(t.parts, pp)
		if d := t.decide.Decide(env, pp); d.Action.MessageLevel() {
			return t.messageLevel(d)
		}
		return nil
	}
	fileID := store.NewID()
	info, err := t.p.Blobs.PutUnsynced(fileID, body)
	if err != nil {
		return fmt.Errorf("store attachment %s: %w", part.Path, err)
	}
	pp.Size = info.Size
	t.parts = append(t.parts, pp)
	d = t.decide.Decide(env, pp)
	if d.Action == policies.Link {
		return t.link(part, fileID, info)
	}
	// Streamed only to learn the size: the blob goes again.
	t.p.deleteBlobs([]store.File{{ID: fileID}}, t.log)
	if d.Action.MessageLevel() {
		return t.messageLevel(d)
	}
	return nil // keep
}

// messageLevel takes a reject, quarantine or hold into the verdict; a
// reject ends the walk.
func (t *Transaction) messageLevel(d policies.Decision) error {
	t.verdict.Add(d)
	if d.Action == policies.Reject {
		return errRefusedByPolicy
	}
	return nil
}
