package audit

import "strings"

// Event types. The names are part of the export contract: scripts filter on
// them, so they never change meaning. SCHEMA.md lists the fields each
// carries.
const (
	TypeMailReceived   = "mail.received"
	TypeMailRelayed    = "mail.relayed"
	TypeMailRejected   = "mail.rejected"
	TypeMailDeferred   = "mail.deferred"
	TypeMailHeld       = "mail.held"
	TypeMailReleased   = "mail.released"
	TypeMailDeleted    = "mail.deleted"
	TypeFileStored     = "file.stored"
	TypeLinkCreated    = "link.created"
	TypeLinkViewed     = "link.viewed"
	TypeDownloadOK     = "download.ok"
	TypeDownloadDenied = "download.denied"
	TypeLinkRevoked    = "link.revoked"
	TypeFilePurged     = "file.purged"
	TypeAuthFailed     = "auth.failed"
	TypeAuditPurged    = "audit.purged"
	// TypeNoticeSent: the next hop accepted a mail the gateway composed
	// itself (code, receipt, notice, DSN) for the recipients listed.
	TypeNoticeSent = "notice.sent"
	// TypeNoticeFailed: such a mail will not reach the recipients listed
	// (refused for good, given up after retries, or not queued).
	TypeNoticeFailed = "notice.failed"
	// TypeVerifySent: a one-time code was queued for a recipient of a
	// message whose links require recipient verification.
	TypeVerifySent = "verify.sent"
	// TypeVerifyOK: a visitor entered a right code and holds a session
	// for that message as that recipient.
	TypeVerifyOK = "verify.ok"
	// TypeVerifyFailed: a code request or attempt was refused (wrong
	// code, not a recipient, rate limit, locked); the reason says which.
	TypeVerifyFailed = "verify.failed"
	// TypeVerifyLocked: wrong codes locked a recipient of a message out.
	TypeVerifyLocked = "verify.locked"

	// AdminTypePrefix starts the type of every admin action
	// ("admin.token.created", "admin.link.revoke", ...). Admin types are an
	// open set so a new admin endpoint needs no change here.
	AdminTypePrefix = "admin."
)

// ActorSystem is the Actor of events the daemon raises on its own
// (retention, expiry purges).
const ActorSystem = "system"

var fixedTypes = []string{
	TypeMailReceived, TypeMailRelayed, TypeMailRejected, TypeMailDeferred,
	TypeMailHeld, TypeMailReleased, TypeMailDeleted,
	TypeFileStored, TypeLinkCreated, TypeLinkViewed,
	TypeDownloadOK, TypeDownloadDenied, TypeLinkRevoked, TypeFilePurged,
	TypeAuthFailed, TypeAuditPurged, TypeNoticeSent, TypeNoticeFailed,
	TypeVerifySent, TypeVerifyOK, TypeVerifyFailed, TypeVerifyLocked,
}

// Types returns the fixed event types in documentation order; admin types
// (AdminTypePrefix + action) come on top of these.
func Types() []string {
	return append([]string(nil), fixedTypes...)
}

// KnownType reports whether t is a documented event type: one of Types, or
// AdminTypePrefix followed by an action name.
func KnownType(t string) bool {
	if strings.HasPrefix(t, AdminTypePrefix) {
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
		return KnownType(f)
	}
	if !strings.HasSuffix(prefix, ".") || strings.Contains(prefix, "*") {
		return false
	}
	if prefix == AdminTypePrefix {
		return true
	}
	for _, t := range fixedTypes {
		if strings.HasPrefix(t, prefix) {
			return true
		}
	}
	return false
}
