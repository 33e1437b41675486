package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/attachgate/attachgate/audit"
)

const (
	// maxUserAgentLen keeps a hostile User-Agent from bloating the log.
	maxUserAgentLen = 512
	// maxDetailLen bounds the Detail of an event (method, path, query).
	maxDetailLen = 1024
)

// detailQueryKeys are the query parameters that go into an event's Detail.
// Anything else is left out: a client may put a secret in a parameter we
// do not know (?access_token=...), and it must not land in the log.
var detailQueryKeys = map[string]bool{
	// /admin/audit
	"from": true, "to": true, "format": true, "type": true,
	"sender": true, "recipient": true, "bom": true,
	// /admin/quarantine (the cursor is opaque, not secret)
	"limit": true, "after": true,
	// /debug/pprof
	"seconds": true, "debug": true, "gc": true,
}

// refuseUnknownParams names the query parameters of v not in known: a
// misspelt parameter must not be ignored silently (a client paging with
// ?limt=10 would get a page it did not ask for).
func refuseUnknownParams(v url.Values, known []string) error {
	var unknown []string
	for key := range v {
		if !slices.Contains(known, key) {
			unknown = append(unknown, strconv.Quote(key))
		}
	}
	switch len(unknown) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("unknown parameter %s (known: %s)", unknown[0], strings.Join(known, ", "))
	}
	slices.Sort(unknown)
	return fmt.Errorf("unknown parameters %s (known: %s)", strings.Join(unknown, ", "), strings.Join(known, ", "))
}

// event starts an audit event for a call by c.
func (c caller) event(typ audit.EventType, r *http.Request) audit.Event {
	return audit.Event{
		Type:       typ,
		Actor:      c.actor(),
		ClientAddr: c.clientAddr,
		UserAgent:  c.userAgent,
		Detail:     requestDetail(r),
	}
}

// requestDetail is "METHOD /path?known=params" with only detailQueryKeys
// kept, cut to maxDetailLen.
func requestDetail(r *http.Request) string {
	d := r.Method + " " + r.URL.EscapedPath()
	kept := url.Values{}
	for key, values := range r.URL.Query() {
		if detailQueryKeys[key] {
			kept[key] = values
		}
	}
	if len(kept) > 0 {
		d += "?" + kept.Encode() // sorted by key
	}
	return cutUTF8(d, maxDetailLen)
}

// userAgent returns the User-Agent cut to maxUserAgentLen.
func userAgent(r *http.Request) string { return cutUTF8(r.UserAgent(), maxUserAgentLen) }

// cutUTF8 cuts s to at most n bytes on a rune boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// record appends an audit event. It survives the client hanging up: a call
// that was started is on record. The error is logged here; the caller
// answers 503.
func (s *Server) record(r *http.Request, e audit.Event) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	if err := s.audit.Record(ctx, e); err != nil {
		s.log.Error("admin: audit record failed",
			"event", e.Type, "actor", e.Actor, "client", e.ClientAddr, "link_id", e.LinkID, "err", err)
		return fmt.Errorf("record audit event %s: %w", e.Type, err)
	}
	return nil
}

// auditUnavailable answers a call that could not be audited and so was not
// carried out.
// recordCall records e for a call whose query parsed with badQuery (nil:
// it parsed) before anything goes out, and reports whether the handler
// goes on. A bad query is recorded with reason "bad request" and answered
// 400 naming the problem; an audit log that cannot record answers 503.
func (s *Server) recordCall(w http.ResponseWriter, r *http.Request, e audit.Event, badQuery error) bool {
	if badQuery != nil {
		e.Reason = "bad request"
	}
	if s.record(r, e) != nil {
		s.auditUnavailable(w)
		return false
	}
	if badQuery != nil {
		writeError(w, http.StatusBadRequest, badQuery.Error())
		return false
	}
	return true
}

func (s *Server) auditUnavailable(w http.ResponseWriter) {
	w.Header().Set("Retry-After", retryAfter)
	writeError(w, http.StatusServiceUnavailable, "audit log unavailable; nothing was done")
}

// errorBody is every error answer: {"error": "..."}.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, errorBody{Error: message})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false) // "<token>" and addresses stay readable for curl users
	if err := enc.Encode(v); err != nil {
		// Only our own plain structs get here.
		status = http.StatusInternalServerError
		body.Reset()
		body.WriteString(`{"error":"internal error"}` + "\n")
	}
	h := w.Header()
	h.Del("Content-Disposition")
	h.Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body.Bytes())
}
