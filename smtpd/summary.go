package smtpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/mailpart"
	"github.com/attachgate/attachgate/metrics"
	"github.com/attachgate/attachgate/policies"
)

// This file is the pipeline's observability hook: after every SMTP
// transaction, one log line with a fixed set of keys (README, "Logs") and
// the message metrics. The keys never carry secrets: no link tokens, no
// subject, no recipient addresses (only their count), no AUTH details.

// Keys of the per-message log line; its message is "message".
const (
	LogKeyID        = "id"          // attachgate's message ID ("" when it failed before one was made)
	LogKeyMessageID = "message_id"  // the Message-ID header
	LogKeySender    = "sender"      // MAIL FROM
	LogKeyRcpts     = "rcpts"       // number of accepted recipients
	LogKeyOutcome   = "outcome"     // relayed, held, rejected, deferred
	LogKeyReply     = "reply"       // the next hop's reply ("" when it gave none)
	LogKeyDuration  = "duration_ms" // start of DATA to our reply
	LogKeyFiles     = "files"       // attachments linked
	LogKeyKept      = "kept"        // attachments kept in the mail
	LogKeySize      = "size"        // bytes received
	LogKeyError     = "error"       // why, when it was not relayed or held
)

// trace is what the hook learns about one transaction while it runs.
type trace struct {
	start time.Time
	id    string
	st    *stored // nil until the attachments are stored
	size  int64
}

// summarize logs the transaction's line and counts it.
func (p *Pipeline) summarize(tr *trace, env Envelope, reply string, err error) {
	d := time.Since(tr.start)
	outcome, hopReply := outcomeOf(tr.st, reply, err)
	var header string
	var linked, kept int
	if tr.st != nil {
		header = tr.st.header
		linked = len(tr.st.files)
		if !tr.st.verdict.MessageLevel() {
			kept = tr.st.attachments - linked
		}
	}
	p.Metrics.MessageDone(outcome, d, linked, kept)

	attrs := []slog.Attr{
		slog.String(LogKeyID, tr.id),
		slog.String(LogKeyMessageID, header),
		slog.String(LogKeySender, env.From),
		slog.Int(LogKeyRcpts, len(env.To)),
		slog.String(LogKeyOutcome, outcome),
		slog.String(LogKeyReply, hopReply),
		slog.Int64(LogKeyDuration, d.Milliseconds()),
		slog.Int(LogKeyFiles, linked),
		slog.Int(LogKeyKept, kept),
		slog.Int64(LogKeySize, tr.size),
	}
	level := slog.LevelInfo
	if err != nil {
		attrs = append(attrs, slog.String(LogKeyError, err.Error()))
		if outcome == metrics.OutcomeDeferred {
			level = slog.LevelWarn
		}
	}
	p.Logger.LogAttrs(context.Background(), level, "message", attrs...)
}

// outcomeOf classifies a transaction as its client hears it (toReply's
// mapping) and picks out the next hop's own reply, if it gave one.
func outcomeOf(st *stored, reply string, err error) (outcome, hopReply string) {
	if err == nil {
		if st != nil && st.verdict.MessageLevel() {
			return metrics.OutcomeHeld, ""
		}
		return metrics.OutcomeRelayed, "250 " + reply
	}
	var he *hopError
	if errors.As(err, &he) {
		return metrics.OutcomeDeferred, ""
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		outcome = metrics.OutcomeDeferred
		if se.Code >= 500 {
			outcome = metrics.OutcomeRejected
		}
		// Stored and not refused by a policy: the reply came from the
		// next hop (a size-limit or policy refusal is our own).
		if st != nil && st.verdict.Action != policies.Reject {
			hopReply = fmt.Sprintf("%d %d.%d.%d %s", se.Code,
				se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
		}
		return outcome, hopReply
	}
	if errors.Is(err, mailpart.ErrTooComplex) {
		return metrics.OutcomeRejected, ""
	}
	return metrics.OutcomeDeferred, ""
}
