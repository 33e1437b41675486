package admin

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
)

// TypeLinkList records GET /admin/links.
const TypeLinkList audit.EventType = audit.AdminTypePrefix + "link.list"

// LinkListParams are the query parameters of GET /admin/links, and the
// flags of `attachgate links list`.
var LinkListParams = []string{"sender", "recipient", "from", "to", "state", "limit", "after"}

// ParseLinkFilter reads the filters of the admin's view of links: sender,
// recipient (addresses, without ASCII case), from and to (inclusive local
// dates YYYY-MM-DD in loc, of the link's creation), state (active,
// expired, revoked or limit, judged at now), limit (1 to
// store.MaxLinkListLimit) and after (the last link ID of the previous
// page). Errors name the parameter.
func ParseLinkFilter(v url.Values, loc *time.Location, now time.Time) (store.LinkFilter, error) {
	if err := refuseUnknownParams(v, LinkListParams); err != nil {
		return store.LinkFilter{}, err
	}
	for _, name := range LinkListParams {
		if len(v[name]) > 1 {
			return store.LinkFilter{}, fmt.Errorf("%s: given %d times, want once", name, len(v[name]))
		}
	}
	f := store.LinkFilter{Sender: v.Get("sender"), Recipient: v.Get("recipient"), Now: now}
	for _, name := range []string{"sender", "recipient"} {
		if raw, ok := v[name]; ok && (raw[0] == "" || len(raw[0]) > 320) {
			return store.LinkFilter{}, fmt.Errorf("%s: want an address of 1 to 320 bytes", name)
		}
	}
	if raw := v.Get("from"); raw != "" || v.Has("from") {
		d, err := parseDateParam("from", raw, loc)
		if err != nil {
			return store.LinkFilter{}, err
		}
		f.From = d
	}
	if raw := v.Get("to"); raw != "" || v.Has("to") {
		d, err := parseDateParam("to", raw, loc)
		if err != nil {
			return store.LinkFilter{}, err
		}
		f.To = d.AddDate(0, 0, 1) // inclusive: up to the end of that day
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return store.LinkFilter{}, fmt.Errorf("from: %s is after to %s", v.Get("from"), v.Get("to"))
	}
	switch st := v.Get("state"); st {
	case store.LinkActive, store.LinkExpired, store.LinkRevoked, store.LinkLimit:
		f.State = st
	default:
		if v.Has("state") {
			return store.LinkFilter{}, fmt.Errorf("state: want active, expired, revoked or limit, got %q", st)
		}
	}
	f.Limit = store.DefaultLinkListLimit
	if v.Has("limit") {
		n, err := strconv.Atoi(v.Get("limit"))
		if err != nil || n < 1 || n > store.MaxLinkListLimit {
			return store.LinkFilter{}, fmt.Errorf("limit: %q is not a number from 1 to %d", v.Get("limit"), store.MaxLinkListLimit)
		}
		f.Limit = n
	}
	if v.Has("after") {
		if !validLinkID(v.Get("after")) {
			return store.LinkFilter{}, fmt.Errorf("after: %q is not a link ID (use the %s of the previous page)", v.Get("after"), NextCursorHeader)
		}
		f.After = v.Get("after")
	}
	if err := f.Check(); err != nil {
		return store.LinkFilter{}, err
	}
	return f, nil
}

// LinkInfo is one link as GET /admin/links/{id} and GET /admin/links show
// it (and `attachgate links show`): never its token or the token's hash.
func LinkInfo(v store.LinkView, now time.Time, loc *time.Location) any {
	s := &Server{location: loc, now: func() time.Time { return now }}
	return s.linkInfo(v)
}

// handleLinkList lists the links that match the query's filters, oldest
// first, one page at a time: a full page sets X-Next-Cursor (the last link
// ID) and a Link rel="next" header. The call is recorded before anything
// goes out; a bad parameter is recorded and answered 400 naming it.
func (s *Server) handleLinkList(w http.ResponseWriter, r *http.Request, c caller) {
	e := c.event(TypeLinkList, r)
	f, err := ParseLinkFilter(r.URL.Query(), s.location, s.now())
	if !s.recordCall(w, r, e, err) {
		return
	}
	ctx, cancel := storeContext(r)
	defer cancel()
	views, err := s.store.ListLinks(ctx, f)
	if err != nil {
		s.storeFailed(w, r, "list links", "", err)
		return
	}
	out := make([]linkInfo, 0, len(views))
	for _, v := range views {
		out = append(out, s.linkInfo(v))
	}
	if len(views) == f.Limit {
		last := views[len(views)-1].Link.ID
		q := r.URL.Query()
		q.Set("after", last)
		w.Header().Set(NextCursorHeader, last)
		w.Header().Set("Link", "</admin/links?"+q.Encode()+`>; rel="next"`)
	}
	writeJSON(w, http.StatusOK, out)
}
