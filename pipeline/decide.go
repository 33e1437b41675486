package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/attachgate/attachgate/mailpart"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
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
// counted, not stored. A reject ends the walk at once. The same goes for
// encrypted_archive, which the part's bytes tell (policies.ArchiveProbe).
//
// With scanning on (scan.go) every part the walk reads, stored or not
// (kept, or in a message being held), also streams to clamd on the way,
// and its verdict is applied before the part is linked.

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

// decideAttachment applies the policies to one attachment, scans it
// (scan.go) and stores those to be linked.
func (t *Transaction) decideAttachment(ctx context.Context, env policies.Envelope, part *mailpart.Part, body io.Reader) error {
	pp := policies.PartOf(part)
	d, final := t.decide.Early(env, pp)
	if final {
		switch {
		case d.Action == policies.Keep, d.Action.MessageLevel(), t.verdict.MessageLevel():
			// Not stored: its size stays unknown to the mail rules.
			t.parts = append(t.parts, pp)
		}
		switch {
		case d.Action == policies.Reject:
			return t.messageLevel(d)
		case d.Action == policies.Keep || d.Action.MessageLevel() || t.verdict.MessageLevel():
			// Kept in the mail, or the message is held and nothing is
			// linked now: scanned on its way past all the same, so
			// malware in held mail is quarantined, never released on a
			// timer.
			if err := t.scanPast(ctx, part, body, d.Rule); err != nil {
				return err
			}
			if d.Action.MessageLevel() {
				return t.messageLevel(d)
			}
			return nil
		}
		fileID := store.NewID()
		sc := t.startScan(ctx, part)
		info, err := t.p.Blobs.PutUnsynced(fileID, sc.tee(body))
		if err != nil {
			sc.abandon()
			return fmt.Errorf("store attachment %s: %w", part.Path, err)
		}
		pp.Size = info.Size
		t.parts = append(t.parts, pp)
		if err := t.scanned(sc, d.Rule, &info, fileID); err != nil || t.verdict.MessageLevel() {
			return err
		}
		return t.link(part, fileID, info, d)
	}

	// A rule with a size condition (or encrypted_archive) may decide:
	// the size is known only after the body went by.
	var probe policies.ArchiveProbe
	if t.verdict.MessageLevel() {
		sc := t.startScan(ctx, part)
		n, err := io.Copy(&probe, sc.tee(body))
		if err != nil {
			sc.abandon()
			return fmt.Errorf("read attachment %s: %w", part.Path, err)
		}
		pp.Size, pp.EncryptedArchive = n, probe.Encrypted()
		t.parts = append(t.parts, pp)
		d := t.decide.Decide(env, pp)
		if err := t.scanned(sc, d.Rule, nil, ""); err != nil {
			return err
		}
		if d.Action.MessageLevel() {
			return t.messageLevel(d)
		}
		return nil
	}
	fileID := store.NewID()
	sc := t.startScan(ctx, part)
	info, err := t.p.Blobs.PutUnsynced(fileID, sc.tee(body, &probe))
	if err != nil {
		sc.abandon()
		return fmt.Errorf("store attachment %s: %w", part.Path, err)
	}
	pp.Size, pp.EncryptedArchive = info.Size, probe.Encrypted()
	t.parts = append(t.parts, pp)
	d = t.decide.Decide(env, pp)
	err = t.scanned(sc, d.Rule, &info, "")
	if err == nil && d.Action == policies.Link && !t.verdict.MessageLevel() {
		return t.link(part, fileID, info, d)
	}
	// Streamed only to learn the size (or refused, held, unscanned): the
	// blob goes again.
	t.p.deleteBlobs([]store.File{{ID: fileID}}, t.log)
	if err != nil {
		return err
	}
	if d.Action.MessageLevel() {
		return t.messageLevel(d)
	}
	return nil // keep
}

// scanPast scans an attachment that is not stored (with scanning on): its
// body is read through to clamd and goes on in the walk as it would.
func (t *Transaction) scanPast(ctx context.Context, part *mailpart.Part, body io.Reader, rule string) error {
	if t.p.Scan == nil {
		return nil
	}
	sc := t.startScan(ctx, part)
	if _, err := io.Copy(io.Discard, sc.tee(body)); err != nil {
		sc.abandon()
		return fmt.Errorf("read attachment %s: %w", part.Path, err)
	}
	return t.scanned(sc, rule, nil, "")
}

// scanned applies the scan's verdict on an attachment rule decided;
// fileID is its blob in the vault ("" for a kept part or one the caller handles), which goes when
// the attachment is not to be linked after all.
func (t *Transaction) scanned(sc *scanning, rule string, info *vault.BlobInfo, fileID string) error {
	d, infected, err := sc.verdict(rule, info)
	if err == nil && infected {
		err = t.messageLevel(d)
	}
	if fileID != "" && (err != nil || t.verdict.MessageLevel()) {
		t.p.deleteBlobs([]store.File{{ID: fileID}}, t.log)
	}
	return err
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
