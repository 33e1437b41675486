package smtpd

import (
	"errors"
	"log/slog"

	"github.com/emersion/go-smtp"
	"github.com/google/uuid"

	"github.com/attachgate/attachgate/mailpart"
	"github.com/attachgate/attachgate/store"
)

// Replies we give ourselves (RFC 5321 codes, RFC 3463 enhanced codes).
// Internal trouble is always 4xx: in Postfix's after-queue mode a 5xx from
// us would bounce mail that only needs a retry.
var (
	replyRelayDenied = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
		Message: "Relaying denied: client is not in a trusted network and not authenticated"}
	replyNeedUTF8 = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
		Message: "Non-ASCII address requires the SMTPUTF8 parameter"}
	replyTooManyRecipients = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3},
		Message: "Too many recipients"}
	replyTooComplex = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0},
		Message: "Message structure too complex"}
	replyHopUnavailable = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1},
		Message: "Next hop unavailable, try again later"}
	// replyStoreUnavailable: the metadata store is down or is not the
	// dataset this instance served (store.ErrUnavailable).
	replyStoreUnavailable = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Storage temporarily unavailable, try again later"}
	replyHopLost = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
		Message: "Connection to next hop lost, try again later"}
	replyNoMail = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1},
		Message: "Send MAIL first"}
)

// hopError marks a transport failure talking to the next hop.
type hopError struct {
	op  string
	err error
}

func (e *hopError) Error() string { return "next hop " + e.op + ": " + e.err.Error() }
func (e *hopError) Unwrap() error { return e.err }

// toReply turns any error into the reply our client gets. go-smtp sends a
// non-*SMTPError's text verbatim, so every Session method ends here.
func toReply(log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	// First: a transport failure may wrap the 421 the next hop said as
	// it hung up, which is not a verdict to pass on.
	var he *hopError
	if errors.As(err, &he) {
		log.Warn("next hop failed", "op", he.op, "err", he.err)
		if he.op == "connect" {
			return replyHopUnavailable
		}
		return replyHopLost
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se
	}
	if errors.Is(err, store.ErrUnavailable) {
		// The store's guard logged the outage once; one line per
		// refused message would drown the log.
		log.Debug("message refused: metadata store unavailable", "err", err)
		return replyStoreUnavailable
	}
	if errors.Is(err, mailpart.ErrTooComplex) {
		log.Info("message rejected", "reason", err)
		return replyTooComplex
	}
	ref := uuid.NewString()[:8]
	log.Error("internal error", "ref", ref, "err", err)
	return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Internal error, try again later (ref " + ref + ")"}
}
