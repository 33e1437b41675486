package linkserver

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"

	"github.com/attachgate/attachgate/bytesize"
)

// reasonUnverified is the download.denied reason of a download of a
// recipient-code message without a verified session.
const reasonUnverified = "unverified"

// maxTokenLen bounds what we hash and look up; real tokens are 43 bytes.
const maxTokenLen = 128

// handleLanding shows the landing page for GET and HEAD. It never counts a
// download: mail scanners fetch links before the recipient does.
func (s *Server) handleLanding(w http.ResponseWriter, r *http.Request) {
	if s.refuseIfLimited(w, r) {
		return
	}
	now := s.now()
	view, err := s.linkByToken(r, r.PathValue("token"))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// Unknown tokens are not audited: anyone can invent them.
			// A purged link's tombstone says what became of it.
			s.renderMissing(w, r, r.PathValue("token"), now, nil)
			return
		}
		s.storeFailed(w, r, "link by token", "", err)
		return
	}
	viewed := withLink(s.webEvent(r, audit.TypeLinkViewed), view)
	if err := linkState(view, now); err != nil {
		kind, reason := denial(err)
		viewed.Reason = reason
		_ = s.record(r, viewed) // already logged; the answer is a refusal anyway
		s.renderErrorAt(w, r, kind, stateTime(view, err))
		return
	}
	// No audit, no page: a view the log cannot hold is not shown.
	if err := s.record(r, viewed); err != nil {
		s.renderError(w, r, pageUnavailable)
		return
	}
	// A view names the recipient when the browser sent a session (a
	// same-site visit); a click from webmail arrives without one.
	viewer, _ := s.verifiedRecipient(r, view.Message)
	s.recordAccess(r, view, store.AccessView, viewer)

	s.setCSRFCookie(w, r, csrfCookieValue(r))
	t := catalogFor(r)
	expires := effectiveExpiry(view).In(s.location)
	landing := &landingData{
		FileName:     view.File.Name,
		SizeHuman:    bytesize.Human(view.File.Size),
		SizeBytes:    t.byteCount(view.File.Size),
		Sender:       view.Message.Sender,
		Expires:      t.formatTime(expires),
		ExpiresISO:   expires.Format(time.RFC3339),
		SHA256Groups: groupHash(view.File.SHA256),
		Action:       "/d/" + url.PathEscape(r.PathValue("token")),
		CSRF:         s.formToken(view.Link.TokenHash, now),
	}
	if landing.Sender == "" {
		landing.Sender = t.NoSender
	}
	if view.Message.Verify != store.VerifyNone {
		// The session cookie is SameSite=Strict, so a page opened from
		// webmail does not see it; the Download POST (same-site) does.
		vt := verifyCatalogFor(r)
		if rcpt, ok := s.verifiedRecipient(r, view.Message); ok {
			landing.VerifiedLabel, landing.VerifiedAs = vt.VerifiedAs, rcpt
		} else {
			landing.VerifyNote = vt.WillAsk
		}
	}
	if limit := view.Link.MaxDownloads; limit > 0 {
		landing.DownloadsLeft = strconv.Itoa(limit - view.Link.Downloads)
	}
	s.renderPage(w, r, http.StatusOK, "landing", pageData{T: t, Title: t.LandingTitle, Landing: landing})
}

// handleConfirm is the landing page's form: it checks CSRF, counts the
// download atomically and redirects to a short-lived signed file URL.
func (s *Server) handleConfirm(w http.ResponseWriter, r *http.Request) {
	if s.refuseIfLimited(w, r) {
		return
	}
	now := s.now()
	view, err := s.linkByToken(r, r.PathValue("token"))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			denied := s.webEvent(r, audit.TypeDownloadDenied)
			s.renderMissing(w, r, r.PathValue("token"), now, &denied)
			return
		}
		s.storeFailed(w, r, "link by token", "", err)
		return
	}
	denied := withLink(s.webEvent(r, audit.TypeDownloadDenied), view)
	if !s.csrfValid(r, view.Link.TokenHash, now) {
		denied.Reason = "csrf"
		s.denials.deny(r, denied)
		s.renderError(w, r, pageCSRF)
		return
	}
	// The store's count checks the link only; the file's expiry, which can
	// be earlier, is checked here. Dead links also skip a database write.
	if err := linkState(view, now); err != nil {
		s.deny(w, r, view, denied, err)
		return
	}
	// recipient-code: no session, no download; the gate shows the
	// address form instead.
	rcpt, verified := s.requireRecipient(w, r, view.Message)
	if !verified {
		denied.Reason = reasonUnverified
		s.denials.deny(r, denied)
		return
	}
	s.redirectToFile(w, r, view, denied, rcpt, "landing page", now)
}

// redirectToFile counts a download of view's link and sends the browser
// to the file's short-lived signed URL (303). The URL names the verified
// recipient (rcpt, "" when the message needs none), so the file's
// download.ok does too, with or without the session cookie. A link that
// is no longer usable gets denied recorded and its page.
func (s *Server) redirectToFile(w http.ResponseWriter, r *http.Request, view store.LinkView, denied audit.Event, rcpt, via string, now time.Time) {
	counted, err := s.countDownload(r, view.Link.ID, now)
	if err != nil {
		if _, reason := denial(err); reason != "" {
			s.deny(w, r, view, denied, err)
			return
		}
		s.storeFailed(w, r, "count download", view.Link.ID, err)
		return
	}
	s.log.Debug("linkserver: download counted", "via", via,
		"link_id", counted.ID, "downloads", counted.Downloads, "max_downloads", counted.MaxDownloads)

	h := w.Header()
	rcptIndex := -1
	if rcpt != "" {
		rcptIndex = slices.Index(view.Message.Recipients, rcpt)
	}
	h.Set("Location", s.signedFileURLFor(view.Link.ID, view.File.Name, now.Add(s.signedURLTTL), rcptIndex))
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusSeeOther)
}

// deny records a download.denied event for a known link state and sends
// the matching page.
func (s *Server) deny(w http.ResponseWriter, r *http.Request, view store.LinkView, denied audit.Event, state error) {
	kind, reason := denial(state)
	denied.Reason = reason
	s.denials.deny(r, denied)
	s.renderErrorAt(w, r, kind, stateTime(view, state))
}

// stateTime is when the link of v stopped working in state: its
// revocation or its (effective) expiry.
func stateTime(v store.LinkView, state error) time.Time {
	switch {
	case errors.Is(state, store.ErrRevoked):
		return v.Link.RevokedAt
	case errors.Is(state, store.ErrExpired):
		return effectiveExpiry(v)
	}
	return time.Time{}
}

// renderMissing answers a token no live link has. A tombstone (the link's
// file was purged) gives 410 with the date it expired or was withdrawn;
// otherwise 404. denied, when not nil (a POST), is recorded with the
// reason.
func (s *Server) renderMissing(w http.ResponseWriter, r *http.Request, token string, now time.Time, denied *audit.Event) {
	kind, reason, at := pageNotFound, "unknown", time.Time{}
	if plausibleToken(token) {
		ctx, cancel := storeContext(r)
		tomb, err := s.store.TombstoneByTokenHash(ctx, store.HashToken(token), now)
		cancel()
		switch {
		case err == nil && tomb.State == store.TombstoneRevoked:
			kind, reason, at = pageRevoked, "revoked", tomb.At
		case err == nil:
			kind, reason, at = pageExpired, "expired", tomb.At
		case !errors.Is(err, store.ErrNotFound):
			// The tombstone is a courtesy: an error reading it must not
			// hide that the link is gone. Say "not found", log it.
			s.log.Warn("linkserver: tombstone lookup failed", "err", err)
		}
	}
	if denied != nil {
		denied.Reason = reason
		if reason != "unknown" {
			denied.Detail = "purged link (tombstone)"
		}
		s.denials.deny(r, *denied)
	}
	s.renderErrorAt(w, r, kind, at)
}

func (s *Server) linkByToken(r *http.Request, token string) (store.LinkView, error) {
	if !plausibleToken(token) {
		return store.LinkView{}, store.ErrNotFound
	}
	ctx, cancel := storeContext(r)
	defer cancel()
	view, err := s.store.LinkByTokenHash(ctx, store.HashToken(token))
	if err != nil {
		// The token stays out of the error: errors end up in logs.
		return store.LinkView{}, fmt.Errorf("look up link by token: %w", err)
	}
	return view, nil
}

func (s *Server) countDownload(r *http.Request, linkID string, now time.Time) (store.Link, error) {
	ctx, cancel := storeContext(r)
	defer cancel()
	link, err := s.store.CountDownload(ctx, linkID, now)
	if err != nil {
		return store.Link{}, fmt.Errorf("count download of link %s: %w", linkID, err)
	}
	return link, nil
}

// plausibleToken rejects what cannot be a token (base64url, bounded) before
// it reaches the database.
func plausibleToken(token string) bool {
	if token == "" || len(token) > maxTokenLen {
		return false
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// linkState says whether v can be downloaded at now, with the store's
// errors. Revocation wins over expiry, expiry over the limit, as in the
// store.
func linkState(v store.LinkView, now time.Time) error {
	switch {
	case !v.Link.RevokedAt.IsZero():
		return store.ErrRevoked
	case expiredAt(v.Link.ExpiresAt, now) || expiredAt(v.File.ExpiresAt, now):
		return store.ErrExpired
	case v.Link.MaxDownloads > 0 && v.Link.Downloads >= v.Link.MaxDownloads:
		return store.ErrLimit
	}
	return nil
}

// expiredAt: a link expiring at T is dead at T, as the store counts it.
func expiredAt(expires, now time.Time) bool {
	return !expires.IsZero() && !now.Before(expires)
}

// effectiveExpiry is the earlier of the link's and the file's expiry.
func effectiveExpiry(v store.LinkView) time.Time {
	link, file := v.Link.ExpiresAt, v.File.ExpiresAt
	if link.IsZero() || (!file.IsZero() && file.Before(link)) {
		return file
	}
	return link
}

// denial maps a link state to its page and audit reason; reason is "" for
// errors that are not link states.
func denial(err error) (kind pageKind, reason string) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return pageNotFound, "unknown"
	case errors.Is(err, store.ErrExpired):
		return pageExpired, "expired"
	case errors.Is(err, store.ErrRevoked):
		return pageRevoked, "revoked"
	case errors.Is(err, store.ErrLimit):
		return pageLimitReached, "limit"
	}
	return pageInternal, ""
}
