package audit

import "strings"

// EventType names what an event records. The names are part of the export
// contract: scripts filter on them, so they never change meaning.
// SCHEMA.md lists the fields each carries.
type EventType string

// Event types. Every caller uses these constants (admin actions: AdminType).
const (
	TypeMailReceived   EventType = "mail.received"
	TypeMailRelayed    EventType = "mail.relayed"
	TypeMailRejected   EventType = "mail.rejected"
	TypeMailDeferred   EventType = "mail.deferred"
	TypeMailHeld       EventType = "mail.held"
	TypeMailReleased   EventType = "mail.released"
	TypeMailDeleted    EventType = "mail.deleted"
	TypeFileStored     EventType = "file.stored"
	TypeLinkCreated    EventType = "link.created"
	TypeLinkViewed     EventType = "link.viewed"
	TypeDownloadOK     EventType = "download.ok"
	TypeDownloadDenied EventType = "download.denied"
	TypeLinkRevoked    EventType = "link.revoked"
	TypeFilePurged     EventType = "file.purged"
	TypeAuthFailed     EventType = "auth.failed"
	TypeAuditPurged    EventType = "audit.purged"
	// TypeNoticeSent: the next hop accepted a mail the gateway composed
	// itself (code, receipt, notice, DSN) for the recipients listed.
	TypeNoticeSent EventType = "notice.sent"
	// TypeNoticeFailed: such a mail will not reach the recipients listed
	// (refused for good, given up after retries, or not queued).
	TypeNoticeFailed EventType = "notice.failed"
	// TypeScanClean, TypeScanInfected, TypeScanError: the malware scan
	// of one attachment found nothing, found malware, or gave no verdict
	// (clamd down, too slow, over its size limit).
	TypeScanClean    EventType = "scan.clean"
	TypeScanInfected EventType = "scan.infected"
	TypeScanError    EventType = "scan.error"
	// TypeLinkExpiryChanged: the sender changed a link's expiry on the
	// manage page (expires: the new one; detail: from, to).
	TypeLinkExpiryChanged EventType = "link.expiry_changed"
	// TypeManageRefused: an action on the sender's manage page was
	// refused (reason: csrf, unknown link, past expiry, beyond max, ...).
	TypeManageRefused EventType = "manage.refused"
	// TypeVerifySent: a one-time code was queued for a recipient of a
	// message whose links require recipient verification.
	TypeVerifySent EventType = "verify.sent"
	// TypeVerifyOK: a visitor entered a right code and holds a session
	// for that message as that recipient.
	TypeVerifyOK EventType = "verify.ok"
	// TypeVerifyFailed: a code request or attempt was refused (wrong
	// code, not a recipient, rate limit, locked); the reason says which.
	TypeVerifyFailed EventType = "verify.failed"
	// TypeVerifyLocked: wrong codes locked a recipient of a message out.
	TypeVerifyLocked EventType = "verify.locked"

	// Sender control of held mail and supervisor approval (quarantine).
	TypeHoldCancelled     EventType = "hold.cancelled"
	TypeHoldSentNow       EventType = "hold.sent_now"
	TypeApprovalRequested EventType = "approval.requested"
	TypeApprovalApproved  EventType = "approval.approved"
	TypeApprovalRejected  EventType = "approval.rejected"
	TypeApprovalExpired   EventType = "approval.expired"
	// TypeHoldRefused: a held message's link (sender's cancel or send
	// now, approver's approve or reject) was refused: a form not issued
	// by its page (csrf), an unknown link (also on GET), or a POST on a
	// link already used, decided, expired or whose message is gone.
	TypeHoldRefused EventType = "hold.refused"

	// AdminTypePrefix starts the type of every admin action
	// ("admin.token.created", "admin.link.revoke", ...). Admin types are an
	// open set so a new admin endpoint needs no change here.
	AdminTypePrefix = "admin."
)

// Outcomes of held mail that end without delivery to some recipients.
const (
	// TypeMailBounced: a held message will not reach the recipients
	// listed (the next hop refused them for good at release, or retries
	// ran out); the sender was sent a DSN.
	TypeMailBounced EventType = "mail.bounced"
	// TypeMailPurged: a held message nobody released or deleted was
	// removed after quarantine.retention; the sender was sent a DSN.
	TypeMailPurged EventType = "mail.purged"
)

// ActorSystem is the Actor of events the daemon raises on its own
// (retention, expiry purges).
const ActorSystem = "system"

var fixedTypes = []EventType{
	TypeMailReceived, TypeMailRelayed, TypeMailRejected, TypeMailDeferred,
	TypeMailHeld, TypeMailReleased, TypeMailDeleted,
	TypeFileStored, TypeLinkCreated, TypeLinkViewed,
	TypeDownloadOK, TypeDownloadDenied, TypeLinkRevoked, TypeFilePurged,
	TypeAuthFailed, TypeAuditPurged, TypeNoticeSent, TypeNoticeFailed,
	TypeScanClean, TypeScanInfected, TypeScanError,
	TypeMailBounced, TypeMailPurged,
	TypeLinkExpiryChanged, TypeManageRefused,
	TypeVerifySent, TypeVerifyOK, TypeVerifyFailed, TypeVerifyLocked,
	TypeHoldCancelled, TypeHoldSentNow,
	TypeApprovalRequested, TypeApprovalApproved, TypeApprovalRejected, TypeApprovalExpired,
	TypeHoldRefused,
}

// Types returns the fixed event types in documentation order; admin types
// (AdminTypePrefix + action) come on top of these.
func Types() []EventType {
	return append([]EventType(nil), fixedTypes...)
}

// TypeNames returns Types as strings.
func TypeNames() []string {
	names := make([]string, len(fixedTypes))
	for i, t := range fixedTypes {
		names[i] = string(t)
	}
	return names
}

// AdminType is the type of the admin action named action
// ("token.created" gives "admin.token.created").
func AdminType(action string) EventType { return EventType(AdminTypePrefix + action) }

// String is the type's name as exported.
func (t EventType) String() string { return string(t) }

// KnownType reports whether t is a documented event type: one of Types, or
// AdminTypePrefix followed by an action name.
func KnownType(t EventType) bool {
	if strings.HasPrefix(string(t), AdminTypePrefix) {
		return len(t) > len(AdminTypePrefix)
	}
	for _, f := range fixedTypes {
		if t == f {
			return true
		}
	}
	return false
}

// KnownTypeFilter reports whether f is a usable Query.Types entry: a known
// type, or a family pattern such as "admin.*" or "mail.*" that matches at
// least one known type. It lets the CLI reject a misspelt type instead of
// exporting nothing.
func KnownTypeFilter(f string) bool {
	prefix, isPattern := strings.CutSuffix(f, "*")
	if !isPattern {
		return KnownType(EventType(f))
	}
	if !strings.HasSuffix(prefix, ".") || strings.Contains(prefix, "*") {
		return false
	}
	if prefix == AdminTypePrefix {
		return true
	}
	for _, t := range fixedTypes {
		if strings.HasPrefix(string(t), prefix) {
			return true
		}
	}
	return false
}
