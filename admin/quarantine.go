package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/quarantine"
)

// Audit event types of the quarantine routes.
const (
	TypeQuarantineList    audit.EventType = audit.AdminTypePrefix + "quarantine.list"
	TypeQuarantineRelease audit.EventType = audit.AdminTypePrefix + "quarantine.release"
	TypeQuarantineDelete  audit.EventType = audit.AdminTypePrefix + "quarantine.delete"
)

// reasonUnknownHeld is the Reason of a call about an ID nothing is held
// under.
const reasonUnknownHeld = "unknown held message"

// releaseTimeout bounds a release: the next hop's own timeout bounds each
// command, this the whole conversation.
const releaseTimeout = 30 * time.Minute

// Quarantine is the held mail the admin API lists, releases and deletes;
// *quarantine.Manager implements it.
type Quarantine interface {
	// Page lists up to limit held messages after the cursor, oldest
	// first, and says whether more follow.
	Page(ctx context.Context, after quarantine.Cursor, limit int) ([]quarantine.Item, bool, error)
	Get(ctx context.Context, id string) (quarantine.Item, error)
	Release(ctx context.Context, id, actor string) (quarantine.Result, error)
	Delete(ctx context.Context, id, actor string) (quarantine.Result, error)
}

// heldInfo is one entry of GET /admin/quarantine.
type heldInfo struct {
	ID         string   `json:"id"`
	Action     string   `json:"action"` // quarantine or hold
	Rule       string   `json:"rule"`
	HeaderID   string   `json:"header_id"`
	Sender     string   `json:"sender"`
	Recipients []string `json:"recipients"`
	ClientAddr string   `json:"client_addr"`
	AuthUser   string   `json:"auth_user"`
	Size       int64    `json:"size"`
	HeldAt     string   `json:"held_at"`
	ReleaseAt  *string  `json:"release_at"` // null: only an admin releases it
	Attempts   int      `json:"attempts"`   // failed releases
	LastError  string   `json:"last_error"`
}

// releaseResult is the answer of POST /admin/quarantine/{id}/release.
type releaseResult struct {
	ID         string `json:"id"`
	ReleasedAt string `json:"released_at"`
	Reply      string `json:"reply"` // the next hop's, for delivered
	// Delivered got the message; Bounced were refused for good (the
	// sender gets a DSN); Pending were deferred and are retried.
	Delivered []string `json:"delivered"`
	Bounced   []string `json:"bounced"`
	Pending   []string `json:"pending"`
}

// deleteResult is the answer of POST /admin/quarantine/{id}/delete.
type deleteResult struct {
	ID        string `json:"id"`
	DeletedAt string `json:"deleted_at"`
}

func (s *Server) mountQuarantine(mux *http.ServeMux) {
	if s.quarantine == nil {
		return
	}
	mux.HandleFunc("GET /admin/quarantine", s.guard(anyRole, s.handleQuarantineList))
	mux.HandleFunc("/admin/quarantine", s.guard(anyRole, s.methodNotAllowed("GET, HEAD")))
	mux.HandleFunc("POST /admin/quarantine/{id}/release", s.guard(adminOnly, s.handleQuarantineRelease))
	mux.HandleFunc("/admin/quarantine/{id}/release", s.guard(anyRole, s.methodNotAllowed("POST")))
	mux.HandleFunc("POST /admin/quarantine/{id}/delete", s.guard(adminOnly, s.handleQuarantineDelete))
	mux.HandleFunc("/admin/quarantine/{id}/delete", s.guard(anyRole, s.methodNotAllowed("POST")))
}

// Paging of GET /admin/quarantine.
const (
	defaultQuarantineLimit = 100
	maxQuarantineLimit     = 1000
	// NextCursorHeader carries the cursor of the next page of
	// GET /admin/quarantine when more messages follow; absent on the last.
	NextCursorHeader = "X-Next-Cursor"
)

// quarantineListParams are the query parameters of GET /admin/quarantine.
var quarantineListParams = []string{"limit", "after"}

// quarantinePage is a checked GET /admin/quarantine query.
type quarantinePage struct {
	after quarantine.Cursor
	limit int
}

// parseQuarantinePage checks the query of GET /admin/quarantine. Errors
// name the parameter at fault.
func parseQuarantinePage(v url.Values) (quarantinePage, error) {
	if err := refuseUnknownParams(v, quarantineListParams); err != nil {
		return quarantinePage{}, err
	}
	for _, name := range quarantineListParams {
		if len(v[name]) > 1 {
			return quarantinePage{}, fmt.Errorf("%s: given %d times, want once", name, len(v[name]))
		}
	}
	p := quarantinePage{limit: defaultQuarantineLimit}
	if raw, ok := v["limit"]; ok {
		n, err := strconv.Atoi(raw[0])
		if err != nil || n < 1 || n > maxQuarantineLimit {
			return quarantinePage{}, fmt.Errorf("limit: %q is not a number from 1 to %d", raw[0], maxQuarantineLimit)
		}
		p.limit = n
	}
	if raw, ok := v["after"]; ok {
		c, err := quarantine.ParseCursor(raw[0])
		if err != nil {
			return quarantinePage{}, fmt.Errorf("after: %w (use the %s of the previous page)", err, NextCursorHeader)
		}
		p.after = c
	}
	return p, nil
}

// handleQuarantineList lists one page of the held messages, oldest first.
// When more follow, the X-Next-Cursor header and a Link rel="next" header
// say where the next page starts. The call is recorded before anything
// goes out.
func (s *Server) handleQuarantineList(w http.ResponseWriter, r *http.Request, c caller) {
	e := c.event(TypeQuarantineList, r)
	page, err := parseQuarantinePage(r.URL.Query())
	if !s.recordCall(w, r, e, err) {
		return
	}
	ctx, cancel := storeContext(r)
	defer cancel()
	items, more, err := s.quarantine.Page(ctx, page.after, page.limit)
	if err != nil {
		s.storeFailed(w, r, "list quarantine", "", err)
		return
	}
	out := make([]heldInfo, 0, len(items))
	for _, it := range items {
		out = append(out, s.heldInfo(it))
	}
	if more && len(items) > 0 {
		next := quarantine.CursorOf(items[len(items)-1]).String()
		q := url.Values{"after": {next}, "limit": {strconv.Itoa(page.limit)}}
		w.Header().Set(NextCursorHeader, next)
		w.Header().Set("Link", "</admin/quarantine?"+q.Encode()+`>; rel="next"`)
	}
	writeJSON(w, http.StatusOK, out)
}

// handleQuarantineRelease relays a held message. admin.quarantine.release
// is recorded before anything is done; mail.released follows once the next
// hop took the message (the quarantine records it).
func (s *Server) handleQuarantineRelease(w http.ResponseWriter, r *http.Request, c caller) {
	e := c.event(TypeQuarantineRelease, r)
	it, ok := s.lookupHeld(w, r, e)
	if !ok {
		return
	}
	if s.record(r, withHeld(e, it)) != nil {
		s.auditUnavailable(w)
		return
	}
	// A client hanging up must not cut the next-hop conversation short.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), releaseTimeout)
	defer cancel()
	res, err := s.quarantine.Release(ctx, it.ID, c.actor())
	if s.heldFailed(w, r, "release", it.ID, err, "released") {
		return
	}
	s.log.Info("admin: held message released", "actor", c.actor(), "client", c.clientAddr, "msg", it.ID, "reply", res.Reply)
	writeJSON(w, http.StatusOK, releaseResult{ID: it.ID, ReleasedAt: s.formatTime(res.At), Reply: res.Reply,
		Delivered: nonNilList(res.Delivered), Bounced: nonNilList(res.Bounced), Pending: nonNilList(res.Pending)})
}

// handleQuarantineDelete deletes a held message. admin.quarantine.delete is
// recorded before anything is done; mail.deleted follows.
func (s *Server) handleQuarantineDelete(w http.ResponseWriter, r *http.Request, c caller) {
	e := c.event(TypeQuarantineDelete, r)
	it, ok := s.lookupHeld(w, r, e)
	if !ok {
		return
	}
	if s.record(r, withHeld(e, it)) != nil {
		s.auditUnavailable(w)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), storeTimeout)
	defer cancel()
	res, err := s.quarantine.Delete(ctx, it.ID, c.actor())
	if s.heldFailed(w, r, "delete", it.ID, err, "deleted") {
		return
	}
	s.log.Info("admin: held message deleted", "actor", c.actor(), "client", c.clientAddr, "msg", it.ID)
	writeJSON(w, http.StatusOK, deleteResult{ID: it.ID, DeletedAt: s.formatTime(res.At)})
}

// heldFailed answers a failed release or deletion and reports whether it
// did. done is the past tense of op.
func (s *Server) heldFailed(w http.ResponseWriter, r *http.Request, op, id string, err error, done string) bool {
	var de *quarantine.DeliveryError
	switch {
	case err == nil:
		return false
	case errors.Is(err, quarantine.ErrUnaudited):
		w.Header().Set("Retry-After", retryAfter)
		writeError(w, http.StatusServiceUnavailable,
			"message "+done+" and the admin call recorded, but recording mail."+done+" failed")
	case errors.Is(err, quarantine.ErrNotFound):
		// Released or deleted by someone else since the lookup.
		writeError(w, http.StatusNotFound, reasonUnknownHeld)
	case errors.Is(err, quarantine.ErrBusy):
		writeError(w, http.StatusConflict, "the held message is being released or deleted right now; look again shortly")
	case errors.As(err, &de):
		s.log.Warn("admin: release failed at the next hop", "msg", id, "err", err)
		writeError(w, http.StatusBadGateway, "the next hop did not take the message for any recipient; it stays held and is retried: "+de.Error())
	default:
		s.log.Error("admin: quarantine call failed", "op", op, "msg", id, "err", err)
		w.Header().Set("Retry-After", retryAfter)
		writeError(w, http.StatusServiceUnavailable, op+" failed; the message stays held")
	}
	return true
}

// lookupHeld finds the held message named by the {id} path value. When it
// cannot, it records e with the reason and answers 404 or 503 itself.
func (s *Server) lookupHeld(w http.ResponseWriter, r *http.Request, e audit.Event) (quarantine.Item, bool) {
	id := r.PathValue("id")
	if !validLinkID(id) { // held IDs are message IDs: UUIDs
		e.Reason = reasonUnknownHeld
		s.answerUnknownHeld(w, r, e)
		return quarantine.Item{}, false
	}
	e.MessageID = id
	ctx, cancel := storeContext(r)
	defer cancel()
	it, err := s.quarantine.Get(ctx, id)
	switch {
	case err == nil:
		return it, true
	case errors.Is(err, quarantine.ErrNotFound):
		e.Reason = reasonUnknownHeld
		s.answerUnknownHeld(w, r, e)
	default:
		e.Reason = "store unavailable"
		if s.record(r, e) != nil {
			s.auditUnavailable(w)
			return quarantine.Item{}, false
		}
		s.storeFailed(w, r, "look up held message", id, err)
	}
	return quarantine.Item{}, false
}

func (s *Server) answerUnknownHeld(w http.ResponseWriter, r *http.Request, e audit.Event) {
	if s.record(r, e) != nil {
		s.auditUnavailable(w)
		return
	}
	writeError(w, http.StatusNotFound, reasonUnknownHeld)
}

func nonNilList(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// withHeld fills the fields that name the held message concerned.
func withHeld(e audit.Event, it quarantine.Item) audit.Event {
	e.MessageID = it.ID
	e.HeaderID = it.HeaderID
	e.Sender = it.From
	e.Recipients = it.To
	e.Size = it.Size
	return e
}

func (s *Server) heldInfo(it quarantine.Item) heldInfo {
	info := heldInfo{
		ID:         it.ID,
		Action:     string(it.Action),
		Rule:       it.Rule,
		HeaderID:   it.HeaderID,
		Sender:     it.From,
		Recipients: it.To,
		ClientAddr: it.ClientAddr,
		AuthUser:   it.AuthUser,
		Size:       it.Size,
		HeldAt:     s.formatTime(it.HeldAt),
		Attempts:   it.Attempts,
		LastError:  it.LastError,
	}
	if info.Recipients == nil {
		info.Recipients = []string{}
	}
	if !it.ReleaseAt.IsZero() {
		at := s.formatTime(it.ReleaseAt)
		info.ReleaseAt = &at
	}
	return info
}
