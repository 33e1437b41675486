package relay

import (
	"errors"

	"github.com/emersion/go-smtp"
)

// Error is a failed step of the conversation with the next hop: Op names
// the step ("connect", "MAIL FROM", "RCPT TO <addr>", "DATA", "end of
// DATA", "NOOP"), Err is what went wrong. When the next hop answered, Err
// is its *smtp.SMTPError; otherwise the connection failed (see Transport).
// It is the one type every caller (smtpd, pipeline, quarantine, admin)
// uses to tell a next hop's verdict from a lost connection.
type Error struct {
	Op  string
	Err error
}

func (e *Error) Error() string { return "next hop " + e.Op + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Transport reports whether e is a failed conversation rather than a
// verdict of the next hop.
func (e *Error) Transport() bool { return IsTransport(e.Err) }

// IsTransport tells a failed conversation from a verdict of the next hop:
// anything but an *smtp.SMTPError, and a 421, which is the next hop
// closing the connection (RFC 5321 3.8), not a verdict on this message.
// Passed on, a 421 would tell our own client that *we* are closing.
func IsTransport(err error) bool {
	if err == nil {
		return false
	}
	var se *smtp.SMTPError
	return !errors.As(err, &se) || se.Code == 421
}

// Failed wraps err from step op as an *Error when it is a transport
// failure and returns a next hop's verdict (an *smtp.SMTPError) as it is,
// so it can be handed to our own client.
func Failed(op string, err error) error {
	if err == nil {
		return nil
	}
	var re *Error
	if errors.As(err, &re) || !IsTransport(err) {
		return err
	}
	return &Error{Op: op, Err: err}
}
