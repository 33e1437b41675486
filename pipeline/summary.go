package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/mailpart"
	"github.com/attachgate/attachgate/metrics"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/smtpreply"
)

// This file is the transaction's observability hook: when an SMTP
// transaction ends (Commit or Abort), one log line with a fixed set of
// keys (README, "Logs") and the message metrics. The keys never carry
// secrets: no link tokens, no subject, no recipient addresses (only their
// count), no AUTH details. Releases of held mail are not SMTP
// transactions: the quarantine logs and audits those.

// Keys of the per-message log line; its message is "message".
const (
	LogKeyID        = "id"          // attachgate's message ID
	LogKeyMessageID = "message_id"  // the Message-ID header ("" when it failed before it was read)
	LogKeySender    = "sender"      // MAIL FROM
	LogKeyRcpts     = "rcpts"       // number of accepted recipients
	LogKeyOutcome   = "outcome"     // relayed, held, rejected, deferred
	LogKeyReply     = "reply"       // the next hop's reply ("" when it gave none)
	LogKeyDuration  = "duration_ms" // start of DATA to our reply
	LogKeyFiles     = "files"       // attachments linked
	LogKeyKept      = "kept"        // attachments kept in the mail
	LogKeySize      = "size"        // bytes received
	LogKeyError     = "error"       // why, when it was neither relayed nor held
)

// summarize logs the transaction's line and counts it; err is what Abort
// got, nil for Commit.
func (t *Transaction) summarize(err error) {
	if !t.outcomes {
		return // a release
	}
	d := time.Since(t.began)
	outcome, hopReply := t.outcomeOf(err)
	linked, kept := len(t.files), 0
	if outcome == metrics.OutcomeRelayed {
		kept = t.attachments - linked
	}
	t.p.Metrics.MessageDone(outcome, d, linked, kept)

	attrs := []slog.Attr{
		slog.String(LogKeyID, t.id),
		slog.String(LogKeyMessageID, t.header),
		slog.String(LogKeySender, t.env.From),
		slog.Int(LogKeyRcpts, len(t.env.To)),
		slog.String(LogKeyOutcome, outcome),
		slog.String(LogKeyReply, hopReply),
		slog.Int64(LogKeyDuration, d.Milliseconds()),
		slog.Int(LogKeyFiles, linked),
		slog.Int(LogKeyKept, kept),
		slog.Int64(LogKeySize, t.size),
	}
	level := slog.LevelInfo
	if err != nil {
		attrs = append(attrs, slog.String(LogKeyError, err.Error()))
		if outcome == metrics.OutcomeDeferred {
			level = slog.LevelWarn
		}
	}
	// The pipeline's logger, not t.log: the line carries id and sender
	// under its own keys, once.
	t.p.logger().LogAttrs(context.Background(), level, "message", attrs...)
}

// outcomeOf classifies the transaction as its client hears it and picks
// out the next hop's own reply, if it gave one.
func (t *Transaction) outcomeOf(err error) (outcome, hopReply string) {
	if err == nil {
		if t.relayed {
			return metrics.OutcomeRelayed, "250 " + t.reply
		}
		return metrics.OutcomeHeld, ""
	}
	var re *relay.Error
	if errors.As(err, &re) {
		return metrics.OutcomeDeferred, "" // a lost next hop: no verdict
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		outcome = metrics.OutcomeDeferred
		if smtpreply.Permanent(se) {
			outcome = metrics.OutcomeRejected
		}
		// Only the DATA stage talks to the next hop; a policy's or a
		// limit's refusal is our own.
		if t.atHop {
			hopReply = smtpreply.Format(se)
		}
		return outcome, hopReply
	}
	if errors.Is(err, mailpart.ErrTooComplex) {
		return metrics.OutcomeRejected, ""
	}
	return metrics.OutcomeDeferred, ""
}
