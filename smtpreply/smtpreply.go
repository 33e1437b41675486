// Package smtpreply owns the SMTP replies attachgate gives itself: reply
// codes (RFC 5321) and enhanced status codes (RFC 3463) as named
// constants, the replies built from them, and their one text form for the
// audit log. smtpd, pipeline and relay take their replies from here, so a
// code is chosen in one place (mox's smtp/codes.go is the model).
//
// Internal trouble is always 4xx: in Postfix's after-queue mode a 5xx from
// us would bounce mail that only needs a retry.
package smtpreply

import (
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"
)

// Reply codes (RFC 5321 section 4.2.3).
const (
	C250Completed        = 250
	C421ServiceUnavail   = 421
	C500SyntaxError      = 500
	C501BadParams        = 501
	C451LocalError       = 451
	C452StorageFull      = 452 // also: too many recipients (RFC 5321 4.5.3.1.10)
	C454TempAuthFail     = 454
	C503BadSequence      = 503
	C535AuthBadCreds     = 535
	C550MailboxUnavail   = 550
	C552ExceededStorage  = 552
	C553BadMailbox       = 553
	C554TransactionFail  = 554
	firstPermanentFailed = 500
)

// Enhanced status codes (RFC 3463), by class.
var (
	E200Ok              = smtp.EnhancedCode{2, 0, 0}
	E430Other           = smtp.EnhancedCode{4, 3, 0} // mail system: other
	E441NoAnswer        = smtp.EnhancedCode{4, 4, 1} // no answer from host
	E442BadConnection   = smtp.EnhancedCode{4, 4, 2}
	E453TooManyRcpts    = smtp.EnhancedCode{4, 5, 3}
	E470SecurityOther   = smtp.EnhancedCode{4, 7, 0}
	E513BadRcptSyntax   = smtp.EnhancedCode{5, 1, 3}
	E517BadSenderSyntax = smtp.EnhancedCode{5, 1, 7}
	E534MsgTooBig       = smtp.EnhancedCode{5, 3, 4}
	E540NetworkOther    = smtp.EnhancedCode{5, 4, 0}
	E551BadCommand      = smtp.EnhancedCode{5, 5, 1}
	E560MediaOther      = smtp.EnhancedCode{5, 6, 0}
	E567NoUTF8          = smtp.EnhancedCode{5, 6, 7}
	E571Denied          = smtp.EnhancedCode{5, 7, 1}
	E578AuthCredentials = smtp.EnhancedCode{5, 7, 8}
)

// The replies we give ourselves. go-smtp only reads them.
var (
	RelayDenied = &smtp.SMTPError{Code: C550MailboxUnavail, EnhancedCode: E571Denied,
		Message: "Relaying denied: client is not in a trusted network and not authenticated"}
	// NotTenant: a client in smtp.microsoft365.networks sent a message
	// without exactly one X-MS-Exchange-CrossTenant-Id naming a tenant of
	// smtp.microsoft365.tenant_ids (another customer of Microsoft 365).
	NotTenant = &smtp.SMTPError{Code: C550MailboxUnavail, EnhancedCode: E571Denied,
		Message: "Relaying denied: message is not from a configured Microsoft 365 tenant"}
	NeedUTF8 = &smtp.SMTPError{Code: C553BadMailbox, EnhancedCode: E567NoUTF8,
		Message: "Non-ASCII address requires the SMTPUTF8 parameter"}
	NextHopNoUTF8 = &smtp.SMTPError{Code: C553BadMailbox, EnhancedCode: E567NoUTF8,
		Message: "Next hop does not support SMTPUTF8"}
	TooManyRecipients = &smtp.SMTPError{Code: C452StorageFull, EnhancedCode: E453TooManyRcpts,
		Message: "Too many recipients"}
	TooComplex = &smtp.SMTPError{Code: C554TransactionFail, EnhancedCode: E560MediaOther,
		Message: "Message structure too complex"}
	HopUnavailable = &smtp.SMTPError{Code: C451LocalError, EnhancedCode: E441NoAnswer,
		Message: "Next hop unavailable, try again later"}
	HopLost = &smtp.SMTPError{Code: C451LocalError, EnhancedCode: E442BadConnection,
		Message: "Connection to next hop lost, try again later"}
	// ClientGone answers a DATA stream that ended without its final
	// dot (the client hung up): nobody hears it, but go-smtp needs one.
	ClientGone = &smtp.SMTPError{Code: C451LocalError, EnhancedCode: E442BadConnection,
		Message: "Message incomplete: connection lost before the end of DATA"}
	OutboxFailed = &smtp.SMTPError{Code: C451LocalError, EnhancedCode: E430Other,
		Message: "Outbox write failed"}
	BadSender = &smtp.SMTPError{Code: C501BadParams, EnhancedCode: E517BadSenderSyntax,
		Message: "Bad sender address syntax"}
	BadRecipient = &smtp.SMTPError{Code: C553BadMailbox, EnhancedCode: E513BadRcptSyntax,
		Message: "Bad recipient address syntax"}
	LineTooLong = &smtp.SMTPError{Code: C500SyntaxError, EnhancedCode: E540NetworkOther,
		Message: "Message has a line longer than the limit"}
	AuthFailed = &smtp.SMTPError{Code: C535AuthBadCreds, EnhancedCode: E578AuthCredentials,
		Message: "Authentication credentials invalid"}
	AuthLocked = &smtp.SMTPError{Code: C454TempAuthFail, EnhancedCode: E470SecurityOther,
		Message: "Too many failed authentication attempts, try again later"}
	AuthBusy = &smtp.SMTPError{Code: C454TempAuthFail, EnhancedCode: E470SecurityOther,
		Message: "Too many authentications in progress, try again later"}
	AuthTwice = &smtp.SMTPError{Code: C503BadSequence, EnhancedCode: E551BadCommand,
		Message: "Already authenticated"}
	NoMail = &smtp.SMTPError{Code: C503BadSequence, EnhancedCode: E551BadCommand,
		Message: "Send MAIL first"}
)

// Internal is the reply to an internal error; ref ties it to the log line.
func Internal(ref string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: C451LocalError, EnhancedCode: E430Other,
		Message: "Internal error, try again later (ref " + ref + ")"}
}

// Refused is the reply to a message a policy rule rejects: a verdict, so
// a 5xx.
func Refused(rule string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: C550MailboxUnavail, EnhancedCode: E571Denied,
		Message: "Message refused by policy " + rule}
}

// Accepted hands the next hop's own 250 text (its queue ID, say) on;
// go-smtp writes an *SMTPError's code as given, 250 included.
func Accepted(text string) *smtp.SMTPError {
	code := E200Ok
	if first, rest, ok := strings.Cut(text, " "); ok {
		var a, b, c int
		if n, _ := fmt.Sscanf(first, "%d.%d.%d", &a, &b, &c); n == 3 && a == 2 {
			code, text = smtp.EnhancedCode{a, b, c}, rest
		}
	}
	if text == "" {
		text = "Ok"
	}
	return &smtp.SMTPError{Code: C250Completed, EnhancedCode: code, Message: text}
}

// Permanent reports whether se is a 5xx.
func Permanent(se *smtp.SMTPError) bool { return se.Code >= firstPermanentFailed }

// Format is the text of a reply as the audit log keeps it:
// "550 5.7.1 Message refused by policy x".
func Format(se *smtp.SMTPError) string {
	return fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
}
