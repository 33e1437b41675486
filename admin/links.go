package admin

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
)

// maxLinkIDLen bounds the {id} path segment; link IDs are UUIDs (36).
const maxLinkIDLen = 64

// linkRevokedReason is the Reason of the link.revoked event of a revocation
// through the admin API.
const linkRevokedReason = "admin"

// linkInfo is the answer of GET /admin/links/{id}. It never carries the
// token or its hash.
type linkInfo struct {
	LinkID       string   `json:"link_id"`
	Status       string   `json:"status"` // active, expired, revoked, limit
	FileID       string   `json:"file_id"`
	FileName     string   `json:"file_name"`
	ContentType  string   `json:"content_type"`
	Size         int64    `json:"size"`
	SHA256       string   `json:"sha256"`
	CreatedAt    string   `json:"created_at"`
	ExpiresAt    string   `json:"expires_at"`
	RevokedAt    *string  `json:"revoked_at"` // null while not revoked
	Downloads    int      `json:"downloads"`
	MaxDownloads int      `json:"max_downloads"` // 0 = unlimited
	MessageID    string   `json:"message_id"`
	HeaderID     string   `json:"header_id"` // the mail's Message-ID header
	Sender       string   `json:"sender"`
	Recipients   []string `json:"recipients"`
	// Verify and NotifySender are the message's link options: none or
	// recipient-code; none, receipt or downloads.
	Verify       string `json:"verify"`
	NotifySender string `json:"notify_sender"`
}

// DownloadsInFlight tells how many downloads of a link this instance is
// serving; *linkserver.Server implements it.
type DownloadsInFlight interface {
	DownloadsInFlight(linkID string) int
}

// inFlightDetail is the Detail of a link.revoked event when the instance
// counts its downloads; its shape is part of the export contract (README,
// "Revoking a link while it is being downloaded").
func inFlightDetail(n int) string {
	return "downloads in flight on this instance: " + strconv.Itoa(n)
}

// revokeResult is the answer of POST /admin/links/{id}/revoke.
type revokeResult struct {
	LinkID         string `json:"link_id"`
	RevokedAt      string `json:"revoked_at"`
	AlreadyRevoked bool   `json:"already_revoked"`
}

// handleLinkView shows one link's metadata. The call is recorded before
// anything about the link goes out.
func (s *Server) handleLinkView(w http.ResponseWriter, r *http.Request, c caller) {
	e := c.event(TypeLinkView, r)
	view, ok := s.lookupLink(w, r, e)
	if !ok {
		return
	}
	if s.record(r, withLink(e, view)) != nil {
		s.auditUnavailable(w)
		return
	}
	writeJSON(w, http.StatusOK, s.linkInfo(view))
}

// handleLinkRevoke revokes a link. The admin.link.revoke event is recorded
// before the link is touched, so no revocation goes unaudited; once the
// link is revoked for the first time a link.revoked event follows, as
// revocations by the system produce.
func (s *Server) handleLinkRevoke(w http.ResponseWriter, r *http.Request, c caller) {
	e := c.event(TypeLinkRevoke, r)
	before, ok := s.lookupLink(w, r, e)
	if !ok {
		return
	}
	e = withLink(e, before)
	if s.record(r, e) != nil {
		s.auditUnavailable(w)
		return
	}

	now := s.now()
	ctx, cancel := storeContext(r)
	defer cancel()
	if err := s.store.RevokeLink(ctx, before.Link.ID, now); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// Deleted (expiry purge) between lookup and revocation.
			writeError(w, http.StatusNotFound, "unknown link")
			return
		}
		s.storeFailed(w, r, "revoke link", before.Link.ID, err)
		return
	}
	revokedAt := now
	alreadyRevoked := !before.Link.RevokedAt.IsZero()
	// Revoking keeps the first time; read it back in case another revoke
	// won a race since the lookup.
	if after, err := s.store.LinkByID(ctx, before.Link.ID); err == nil && !after.Link.RevokedAt.IsZero() {
		revokedAt = after.Link.RevokedAt
	}
	if !alreadyRevoked {
		revoked := audit.Event{
			Type:       audit.TypeLinkRevoked,
			Actor:      c.actor(),
			ClientAddr: c.clientAddr,
			UserAgent:  c.userAgent,
			FileID:     before.File.ID,
			FileName:   before.File.Name,
			LinkID:     before.Link.ID,
			MessageID:  before.Message.ID,
			Reason:     linkRevokedReason,
		}
		if s.inFlight != nil {
			// Read after the store write: any download that can still
			// send bytes was counted before it (see linkserver).
			revoked.Detail = inFlightDetail(s.inFlight.DownloadsInFlight(before.Link.ID))
		}
		if s.record(r, revoked) != nil {
			w.Header().Set("Retry-After", retryAfter)
			writeError(w, http.StatusServiceUnavailable,
				"link revoked and admin.link.revoke recorded, but recording link.revoked failed")
			return
		}
	}
	s.log.Info("admin: link revoked", "actor", c.actor(), "client", c.clientAddr,
		"link_id", before.Link.ID, "already_revoked", alreadyRevoked)
	writeJSON(w, http.StatusOK, revokeResult{
		LinkID:         before.Link.ID,
		RevokedAt:      revokedAt.In(s.location).Format(time.RFC3339),
		AlreadyRevoked: alreadyRevoked,
	})
}

// lookupLink finds the link named by the {id} path value. When it cannot,
// it records e with the reason and answers 404 or 503 itself.
func (s *Server) lookupLink(w http.ResponseWriter, r *http.Request, e audit.Event) (store.LinkView, bool) {
	id := r.PathValue("id")
	if !validLinkID(id) {
		e.Reason = "unknown link"
		s.answerUnknownLink(w, r, e)
		return store.LinkView{}, false
	}
	e.LinkID = id
	ctx, cancel := storeContext(r)
	defer cancel()
	view, err := s.store.LinkByID(ctx, id)
	switch {
	case err == nil:
		return view, true
	case errors.Is(err, store.ErrNotFound):
		e.Reason = "unknown link"
		s.answerUnknownLink(w, r, e)
	default:
		e.Reason = "store unavailable"
		if s.record(r, e) != nil {
			s.auditUnavailable(w)
			return store.LinkView{}, false
		}
		s.storeFailed(w, r, "look up link", id, err)
	}
	return store.LinkView{}, false
}

func (s *Server) answerUnknownLink(w http.ResponseWriter, r *http.Request, e audit.Event) {
	if s.record(r, e) != nil {
		s.auditUnavailable(w)
		return
	}
	writeError(w, http.StatusNotFound, "unknown link")
}

// validLinkID accepts what a link ID can look like (a UUID, or any short
// run of letters, digits and dashes), so garbage never reaches the store or
// the audit log's link_id.
func validLinkID(id string) bool {
	if id == "" || len(id) > maxLinkIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		ch := id[i]
		if !('0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || ch == '-') {
			return false
		}
	}
	return true
}

// storeFailed answers a store error that is not a link state: the database
// is down or slow.
func (s *Server) storeFailed(w http.ResponseWriter, r *http.Request, op, linkID string, err error) {
	if r.Context().Err() != nil {
		s.log.Debug("admin: store call cut short by the client", "op", op, "link_id", linkID, "err", err)
	} else {
		s.log.Error("admin: store unavailable", "op", op, "link_id", linkID, "err", err)
	}
	w.Header().Set("Retry-After", retryAfter)
	writeError(w, http.StatusServiceUnavailable, "store unavailable")
}

// storeContext bounds one store call and keeps the request's cancellation.
func storeContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), storeTimeout)
}

// withLink fills the fields that name the link, file and message concerned.
func withLink(e audit.Event, v store.LinkView) audit.Event {
	e.LinkID = v.Link.ID
	e.FileID = v.File.ID
	e.FileName = v.File.Name
	e.SHA256 = v.File.SHA256
	e.Size = v.File.Size
	e.MessageID = v.Message.ID
	e.Expires = effectiveExpiry(v)
	return e
}

// effectiveExpiry is when the link stops working: the earlier of the
// link's and the file's expiry.
func effectiveExpiry(v store.LinkView) time.Time {
	link, file := v.Link.ExpiresAt, v.File.ExpiresAt
	if link.IsZero() || (!file.IsZero() && file.Before(link)) {
		return file
	}
	return link
}

func (s *Server) linkInfo(v store.LinkView) linkInfo {
	info := linkInfo{
		LinkID:       v.Link.ID,
		Status:       linkStatus(v, s.now()),
		FileID:       v.File.ID,
		FileName:     v.File.Name,
		ContentType:  v.File.ContentType,
		Size:         v.File.Size,
		SHA256:       v.File.SHA256,
		CreatedAt:    s.formatTime(v.Link.CreatedAt),
		ExpiresAt:    s.formatTime(effectiveExpiry(v)),
		Downloads:    v.Link.Downloads,
		MaxDownloads: v.Link.MaxDownloads,
		MessageID:    v.Message.ID,
		HeaderID:     v.Message.MessageID,
		Sender:       v.Message.Sender,
		Recipients:   v.Message.Recipients,
		Verify:       orNone(v.Message.Verify),
		NotifySender: orNone(v.Message.NotifySender),
	}
	if info.Recipients == nil {
		info.Recipients = []string{}
	}
	if !v.Link.RevokedAt.IsZero() {
		revoked := s.formatTime(v.Link.RevokedAt)
		info.RevokedAt = &revoked
	}
	return info
}

func (s *Server) formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(s.location).Format(time.RFC3339)
}

// linkStatus says whether the link works at now; revocation wins over
// expiry, expiry over the download limit (as store.CountDownload decides).
func linkStatus(v store.LinkView, now time.Time) string {
	switch {
	case !v.Link.RevokedAt.IsZero():
		return "revoked"
	case !now.Before(effectiveExpiry(v)):
		return "expired"
	case v.Link.MaxDownloads > 0 && v.Link.Downloads >= v.Link.MaxDownloads:
		return "limit"
	default:
		return "active"
	}
}

// orNone shows an unset message option as "none".
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
