package pipeline

import (
	"context"
	"fmt"
	"io"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/mailpart"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/scan"
	"github.com/attachgate/attachgate/smtpreply"
	"github.com/attachgate/attachgate/vault"
)

// This file is the malware scan of the check stage. Every attachment the
// walk reads (into the vault, or for a kept part through to the spool)
// also streams to clamd, from the same bytes in the same pass, and its
// verdict is in before the attachment is linked: clean goes on; malware
// makes the message's action the rule's on_infected (quarantine or
// reject); no verdict fails the message with 451 4.7.1, or with on_error
// pass lets it go on unscanned. Each verdict is audited (scan.clean,
// scan.infected, scan.error) with the message's other records.

// Scan configures malware scanning (config section scan).
type Scan struct {
	Client *scan.Client
	// Pass lets a message go on when a scan gives no verdict (on_error:
	// pass); otherwise it is deferred with 451 4.7.1.
	Pass bool
	// OnInfected is the action for malware in an attachment whose rule
	// sets no on_infected: policies.Quarantine or policies.Reject.
	OnInfected policies.Action
}

// scanFailure fails a message whose attachment got no verdict (on_error:
// tempfail): the client sees smtpreply.ScanFailed (451 4.7.1), the log
// the reason.
type scanFailure struct{ err error }

func (e *scanFailure) Error() string   { return "malware scan failed: " + e.err.Error() }
func (e *scanFailure) Unwrap() []error { return []error{smtpreply.ScanFailed, e.err} }

// scanning is one attachment on its way past clamd.
type scanning struct {
	t      *Transaction
	part   *mailpart.Part
	stream *scan.Stream // nil: scanning is off
}

// startScan begins the scan of part; with scanning off it scans nothing.
func (t *Transaction) startScan(ctx context.Context, part *mailpart.Part) *scanning {
	s := &scanning{t: t, part: part}
	if sc := t.p.Scan; sc != nil && sc.Client != nil {
		s.stream = sc.Client.Start(ctx)
	}
	return s
}

// tee is body with every byte read also going to clamd (and to extra
// writers, such as an archive probe).
func (s *scanning) tee(body io.Reader, extra ...io.Writer) io.Reader {
	var ws []io.Writer
	if s.stream != nil {
		ws = append(ws, s.stream)
	}
	ws = append(ws, extra...)
	if len(ws) == 0 {
		return body
	}
	return io.TeeReader(body, io.MultiWriter(ws...))
}

// abandon drops a scan whose body failed to read.
func (s *scanning) abandon() {
	if s.stream != nil {
		s.stream.Close()
	}
}

// verdict is the end of the scan of an attachment that the rule named rule
// decided (Decide's, with the size). info is the blob in the vault (nil
// for a kept part). It returns the decision malware makes (ok false when
// there is none) or, for a scan without a verdict under on_error
// tempfail, an error for the client. A held message being released is
// not held again: malware fails its release (554 5.7.1).
func (s *scanning) verdict(rule string, info *vault.BlobInfo) (infected policies.Decision, ok bool, err error) {
	if s.stream == nil {
		return policies.Decision{}, false, nil
	}
	d, ok, err := s.result(rule, info)
	if ok && s.t.releasing {
		return policies.Decision{}, false, fmt.Errorf("release: %w: %w", ErrRefusedAtRelease, smtpreply.Infected(s.t.infected))
	}
	return d, ok, err
}

func (s *scanning) result(rule string, info *vault.BlobInfo) (infected policies.Decision, ok bool, err error) {
	t, sc := s.t, s.t.p.Scan
	res, serr := s.stream.Result()
	e := audit.Event{Actor: t.actor, ClientAddr: t.env.ClientAddr, MessageID: t.id, Sender: t.env.From,
		FileName: s.part.Filename, ContentType: s.part.MediaType, Size: res.Size}
	if info != nil {
		e.SHA256 = info.SHA256
	}
	log := t.log.With("file", s.part.Filename, "part", s.part.Path)
	switch {
	case serr != nil:
		e.Type, e.Reason = audit.TypeScanError, serr.Error()
		if sc.Pass {
			e.Detail = "on_error=pass"
			log.Warn("malware scan failed; passing the attachment unscanned (scan.on_error: pass)", "err", serr)
			t.scanEvents = append(t.scanEvents, e)
			return policies.Decision{}, false, nil
		}
		e.Detail = "on_error=tempfail"
		log.Warn("malware scan failed; deferring the message", "err", serr)
		t.scanEvents = append(t.scanEvents, e)
		t.reason = "scan error"
		return policies.Decision{}, false, &scanFailure{err: serr}
	case res.Infected:
		action := t.onInfected(rule)
		name := rule
		if name == "" {
			name = "default"
		}
		e.Type, e.Reason = audit.TypeScanInfected, res.Signature
		e.Detail = fmt.Sprintf("on_infected=%s rule=%s", action, name)
		log.Warn("malware found", "signature", res.Signature, "on_infected", action, "rule", name)
		t.scanEvents = append(t.scanEvents, e)
		if t.infected == "" {
			t.infected = res.Signature
		}
		return policies.Decision{Rule: MalwareRule + smtpreply.Printable(res.Signature, 100), Action: action}, true, nil
	}
	e.Type, e.Detail = audit.TypeScanClean, "clamd "+sc.Client.String()
	t.scanEvents = append(t.scanEvents, e)
	return policies.Decision{}, false, nil
}

// MalwareRule starts the rule name of a message malware holds or refuses
// ("malware:Eicar-Test-Signature"): the quarantine's reason and the audit
// log's. No configured rule can have it (':' is not allowed in names).
const MalwareRule = "malware:"

// onInfected is the action for malware in an attachment rule decided.
func (t *Transaction) onInfected(rule string) policies.Action {
	if a := t.engine.OnInfected(rule); a != "" {
		return a
	}
	if a := t.p.Scan.OnInfected; a == policies.Reject {
		return a
	}
	return policies.Quarantine
}

// scanVerdicts are the scan events not yet recorded, with the message's
// header ID now known; record clears them once they are on record.
func (t *Transaction) scanVerdicts() []audit.Event {
	ev := append([]audit.Event(nil), t.scanEvents...)
	for i := range ev {
		ev[i].HeaderID = t.header
	}
	return ev
}
