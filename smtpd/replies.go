package smtpd

import (
	"errors"
	"log/slog"

	"github.com/emersion/go-smtp"
	"github.com/google/uuid"

	"github.com/attachgate/attachgate/mailpart"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/smtpreply"
	"github.com/attachgate/attachgate/store"
)

// Replies we give ourselves, named here for the session code; the codes
// and texts live in package smtpreply.
var (
	replyRelayDenied       = smtpreply.RelayDenied
	replyNeedUTF8          = smtpreply.NeedUTF8
	replyBadSender         = smtpreply.BadSender
	replyBadRecipient      = smtpreply.BadRecipient
	replyTooManyRecipients = smtpreply.TooManyRecipients
	replyLineTooLong       = smtpreply.LineTooLong
	replyNoMail            = smtpreply.NoMail
	// replyStoreUnavailable: the metadata store is down or is not the
	// dataset this instance served (store.ErrUnavailable).
	replyStoreUnavailable = &smtp.SMTPError{Code: smtpreply.C451LocalError, EnhancedCode: smtpreply.E430Other,
		Message: "Storage temporarily unavailable, try again later"}
	// replyBadORCPT is go-smtp's own reply to an ORCPT it cannot decode.
	replyBadORCPT = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 4},
		Message: "Malformed ORCPT parameter value"}
)

// toReply turns any error into the reply our client gets. go-smtp sends a
// non-*SMTPError's text verbatim, so every Session method ends here.
func toReply(log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	// First: a transport failure may wrap the 421 the next hop said as
	// it hung up, which is not a verdict to pass on.
	var he *relay.Error
	if errors.As(err, &he) && he.Transport() {
		log.Warn("next hop failed", "op", he.Op, "err", he.Err)
		if he.Op == "connect" {
			return smtpreply.HopUnavailable
		}
		return smtpreply.HopLost
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
	var gone *clientGone
	if errors.As(err, &gone) {
		// Nobody hears this reply; the message was not relayed.
		log.Info("client went away during DATA", "err", gone.err)
		return smtpreply.ClientGone
	}
	if errors.Is(err, mailpart.ErrTooComplex) {
		log.Info("message rejected", "reason", err)
		return smtpreply.TooComplex
	}
	ref := uuid.NewString()[:8]
	log.Error("internal error", "ref", ref, "err", err)
	return smtpreply.Internal(ref)
}
