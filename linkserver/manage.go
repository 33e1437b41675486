package linkserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/bytesize"
	"github.com/attachgate/attachgate/store"
)

// The sender's manage page, base_url/s/{token}: the token was mailed to
// the envelope sender only (in the receipt), so whoever holds it acts as
// the sender. GET shows the message, its files and every view and
// download; POST (a form with the CSRF field, never a GET) withdraws one
// file, all of them, or changes the expiry. Every change is audited with
// Actor "sender".
//
//	GET  /s/{token}   the page (counts and changes nothing)
//	POST /s/{token}   action=revoke&link=ID | action=revoke-all |
//	                  action=expiry&expires=YYYY-MM-DDTHH:MM (links.time_zone)

const (
	// actorSender is the audit Actor of actions on the manage page.
	actorSender = "sender"
	// DefaultMaxExpiry is Options.MaxExpiry when 0 (links.max_expiry).
	DefaultMaxExpiry = 720 * time.Hour
	// manageCookiePath scopes the CSRF cookie of manage pages.
	manageCookiePath = "/s/"
	// maxExpiryField bounds the expiry form field before parsing.
	maxExpiryField = 32
	// revokedBySender is the Detail of a link.revoked from the manage page.
	revokedBySender = "by sender"
)

// Outcomes of a manage action, shown after the redirect (?done=).
const (
	doneRevoked    = "revoked"
	doneRevokedAll = "revoked-all"
	doneExpiry     = "expiry"
)

// manageCSS adds what the manage page needs to pageCSS; it is allowed by
// its own hash.
const manageCSS = `main{max-width:64rem}` +
	`table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.5rem 0 1rem}` +
	`th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e1e4ea;overflow-wrap:anywhere}` +
	`th{color:#5a6270;font-weight:400}section{border-top:1px solid #e1e4ea;margin-top:1.5rem;padding-top:1rem}` +
	`h2{font-size:1.15rem;margin:0 0 1rem}.done{background:#e6f4ea;padding:.6rem 1rem;border-radius:6px}` +
	`.muted{color:#5a6270}.danger{background:#b3261e}.danger:hover{background:#8c1d18}` +
	`input{font:inherit;padding:.4rem;margin:0 .5rem .5rem 0}form{margin:.5rem 0}`

func styleHash(css string) string {
	sum := sha256.Sum256([]byte(css))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// manageCSP is pageCSP with the second style block allowed.
var manageCSP = "default-src 'none'; style-src " + styleHash(pageCSS) + " " + styleHash(manageCSS) + "; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

var manageTemplates = template.Must(template.Must(pageTemplates.Clone()).Parse(`
{{- define "managetop" -}}
<!doctype html>
<html lang="{{.T.Lang}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<meta name="referrer" content="no-referrer">
<title>{{.Title}}</title>
<style>` + pageCSS + `</style>
<style>` + manageCSS + `</style>
</head>
<body>
<main>
{{end}}

{{- define "csrf" -}}
<input type="hidden" name="` + csrfField + `" value="{{.}}">
{{- end}}

{{- define "manage" -}}
{{template "managetop" .}}<h1>{{.M.Title}}</h1>
{{- with .Manage}}
{{- if .Done}}
<p class="done" role="status">{{.Done}}</p>
{{- end}}
<dl>
<dt>{{$.M.Subject}}</dt><dd class="name">{{if .Subject}}{{.Subject}}{{else}}<span class="muted">{{$.M.NoSubject}}</span>{{end}}</dd>
<dt>{{$.M.Sent}}</dt><dd><time datetime="{{.SentISO}}">{{.Sent}}</time></dd>
<dt>{{$.M.Sender}}</dt><dd>{{.Sender}}</dd>
<dt>{{$.M.Recipients}}</dt><dd>{{range $i, $r := .Recipients}}{{if $i}}<br>{{end}}{{$r}}{{end}}</dd>
</dl>
{{- range .Files}}
<section>
<h2>{{.Name}}</h2>
<dl>
<dt>{{$.M.Size}}</dt><dd>{{.SizeHuman}} ({{.SizeBytes}})</dd>
<dt>{{$.M.SHA256}}</dt><dd><code>{{range $i, $g := .SHA256Groups}}{{if $i}}<wbr>{{end}}{{$g}}{{end}}</code></dd>
<dt>{{$.M.Expires}}</dt><dd><time datetime="{{.ExpiresISO}}">{{.Expires}}</time></dd>
<dt>{{$.M.State}}</dt><dd>{{.State}}</dd>
<dt>{{$.M.Downloads}}</dt><dd>{{.Downloads}}</dd>
</dl>
<h3>{{$.M.Accesses}}</h3>
{{- if .Accesses}}
<table>
<thead><tr><th>{{$.M.When}}</th><th>{{$.M.What}}</th><th>{{$.M.Who}}</th><th>{{$.M.From}}</th></tr></thead>
<tbody>
{{- range .Accesses}}
<tr><td><time datetime="{{.WhenISO}}">{{.When}}</time></td><td>{{.What}}</td><td>{{if .Who}}{{.Who}}{{else}}<span class="muted">{{$.M.Unverified}}</span>{{end}}</td><td>{{.From}}</td></tr>
{{- end}}
</tbody>
</table>
{{- else}}
<p class="muted">{{$.M.NoAccesses}}</p>
{{- end}}
{{- if .Active}}
<form method="post" action="{{$.Manage.Action}}">
{{template "csrf" $.Manage.CSRF}}
<input type="hidden" name="action" value="revoke">
<input type="hidden" name="link" value="{{.LinkID}}">
<button type="submit" class="danger">{{$.M.RevokeFile}}</button>
</form>
{{- end}}
</section>
{{- end}}
{{- if .CanRevokeAll}}
<section>
<h2>{{$.M.RevokeAll}}</h2>
<p>{{$.M.RevokeAllNote}}</p>
<form method="post" action="{{.Action}}">
{{template "csrf" .CSRF}}
<input type="hidden" name="action" value="revoke-all">
<button type="submit" class="danger">{{$.M.RevokeAll}}</button>
</form>
</section>
{{- end}}
<section>
<h2>{{$.M.ChangeExpiry}}</h2>
{{- if .ExpiryLocked}}
<p class="muted">{{$.M.ExpiryLocked}}</p>
{{- else}}
<form method="post" action="{{.Action}}">
{{template "csrf" .CSRF}}
<input type="hidden" name="action" value="expiry">
<label for="expires">{{.ExpiryLabel}}</label><br>
<input type="datetime-local" id="expires" name="expires" value="{{.ExpiryValue}}" min="{{.ExpiryMin}}" max="{{.ExpiryMax}}" required>
<button type="submit">{{$.M.ExpiryButton}}</button>
</form>
<p class="note">{{.ExpiryNote}}</p>
{{- end}}
</section>
<p class="note">{{.Kept}}</p>
{{- end}}
{{template "bottom" .}}
{{- end}}

{{- define "managerefused" -}}
{{template "managetop" .}}<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
<p><a href="{{.Manage.Action}}">{{.M.Back}}</a></p>
{{template "bottom" .}}
{{- end}}
`))

// managePageData is what the manage templates see.
type managePageData struct {
	T       *catalog
	M       *manageText
	Title   string
	Message string // the refusal page
	Manage  *manageData
}

type manageData struct {
	Done         string
	Subject      string
	Sent         string
	SentISO      string
	Sender       string
	Recipients   []string
	Files        []manageFile
	CanRevokeAll bool
	Action       string
	CSRF         string
	ExpiryLocked bool
	ExpiryValue  string
	ExpiryMin    string
	ExpiryMax    string
	ExpiryLabel  string
	ExpiryNote   string
	Kept         string
}

type manageFile struct {
	LinkID       string
	Name         string
	SizeHuman    string
	SizeBytes    string
	SHA256Groups []string
	Expires      string
	ExpiresISO   string
	State        string
	Active       bool
	Downloads    string
	Accesses     []manageAccess
}

type manageAccess struct {
	When    string
	WhenISO string
	What    string
	Who     string
	From    string
}

// datetimeLocal is the value format of <input type="datetime-local">.
const datetimeLocal = "2006-01-02T15:04"

// manageByToken finds the message of a manage token.
func (s *Server) manageByToken(r *http.Request, token string) (store.MessageView, error) {
	if !plausibleToken(token) {
		return store.MessageView{}, store.ErrNotFound
	}
	ctx, cancel := storeContext(r)
	defer cancel()
	mv, err := s.store.MessageByTokenHash(ctx, store.ManageToken, store.HashToken(token))
	if err != nil {
		// The token stays out of the error: errors end up in logs.
		return store.MessageView{}, fmt.Errorf("look up message by manage token: %w", err)
	}
	return mv, nil
}

// handleManage shows the manage page. It changes nothing.
func (s *Server) handleManage(w http.ResponseWriter, r *http.Request) {
	if s.refuseIfLimited(w, r) {
		return
	}
	now := s.now()
	token := r.PathValue("token")
	mv, err := s.manageByToken(r, token)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			s.renderError(w, r, pageNotFound)
			return
		}
		s.storeFailed(w, r, "message by manage token", "", err)
		return
	}
	ctx, cancel := storeContext(r)
	accesses, err := s.store.Accesses(ctx, mv.Message.ID)
	cancel()
	if err != nil {
		s.storeFailed(w, r, "accesses", "", err)
		return
	}
	t := catalogFor(r)
	m := manageTextFor(t)
	data := s.manageData(t, m, mv, accesses, token, now)
	data.Done = m.Done[r.URL.Query().Get("done")] // a fixed sentence, never the query's text
	s.setManageCookie(w, r)
	s.renderManage(w, r, http.StatusOK, "manage", managePageData{T: t, M: m, Title: m.Title, Manage: data})
}

func (s *Server) manageData(t *catalog, m *manageText, mv store.MessageView, accesses []store.Access, token string, now time.Time) *manageData {
	sent := mv.Message.CreatedAt.In(s.location)
	d := &manageData{
		Subject:    mv.Message.Subject,
		Sent:       t.formatTime(sent),
		SentISO:    sent.Format(time.RFC3339),
		Sender:     mv.Message.Sender,
		Recipients: mv.Message.Recipients,
		Action:     "/s/" + url.PathEscape(token),
		CSRF:       s.formToken(store.HashToken(token), now),
		Kept:       fmt.Sprintf(m.Kept, store.MaxAccessesPerMessage),
	}
	if d.Sender == "" {
		d.Sender = t.NoSender
	}
	byLink := map[string][]store.Access{}
	for _, a := range accesses {
		byLink[a.LinkID] = append(byLink[a.LinkID], a)
	}
	for _, v := range mv.Links {
		expires := effectiveExpiry(v).In(s.location)
		f := manageFile{
			LinkID:       v.Link.ID,
			Name:         v.File.Name,
			SizeHuman:    bytesize.Human(v.File.Size),
			SizeBytes:    t.byteCount(v.File.Size),
			SHA256Groups: groupHash(v.File.SHA256),
			Expires:      t.formatTime(expires),
			ExpiresISO:   expires.Format(time.RFC3339),
			Downloads:    strconv.Itoa(v.Link.Downloads),
		}
		if v.Link.MaxDownloads > 0 {
			f.Downloads += " / " + strconv.Itoa(v.Link.MaxDownloads)
		}
		state := linkState(v, now)
		switch {
		case state == nil:
			f.State, f.Active = m.StateActive, true
			d.CanRevokeAll = true
		case errors.Is(state, store.ErrRevoked):
			f.State = fmt.Sprintf(m.StateRevoked, t.formatTime(v.Link.RevokedAt.In(s.location)))
		case errors.Is(state, store.ErrExpired):
			f.State = fmt.Sprintf(m.StateExpired, t.formatTime(expires))
		default:
			f.State = m.StateLimit
			// Used up, but not withdrawn: the sender may still say so.
			f.Active = true
			d.CanRevokeAll = d.CanRevokeAll || f.Active
		}
		if expiredAt(v.File.ExpiresAt, now) {
			d.ExpiryLocked = true
		}
		for _, a := range byLink[v.Link.ID] {
			at := a.At.In(s.location)
			what := m.KindView
			if a.Kind == store.AccessDownload {
				what = m.KindDownload
			}
			f.Accesses = append(f.Accesses, manageAccess{When: m.shortTime(at), WhenISO: at.Format(time.RFC3339),
				What: what, Who: a.Recipient, From: a.ClientAddr})
		}
		d.Files = append(d.Files, f)
	}
	if len(mv.Links) > 0 {
		cur := effectiveExpiry(mv.Links[0]).In(s.location)
		limit := s.expiryLimit(mv).In(s.location)
		d.ExpiryValue = cur.Format(datetimeLocal)
		d.ExpiryMin = now.In(s.location).Add(time.Minute).Format(datetimeLocal)
		d.ExpiryMax = limit.Format(datetimeLocal)
		d.ExpiryLabel = fmt.Sprintf(m.NewExpiry, now.In(s.location).Format("MST, UTC-07:00"))
		d.ExpiryNote = fmt.Sprintf(m.ExpiryNote, t.formatTime(limit))
	}
	return d
}

// expiryLimit is the latest expiry the sender may set: the message's
// creation plus links.max_expiry.
func (s *Server) expiryLimit(mv store.MessageView) time.Time {
	return mv.Message.CreatedAt.Add(s.maxExpiry)
}

// handleManageAction runs one action of the manage page's forms.
func (s *Server) handleManageAction(w http.ResponseWriter, r *http.Request) {
	if s.refuseIfLimited(w, r) {
		return
	}
	now := s.now()
	token := r.PathValue("token")
	mv, err := s.manageByToken(r, token)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			e := s.webEvent(r, audit.TypeManageRefused)
			e.Reason = "unknown"
			e.Detail = "manage page: unknown token"
			s.denials.deny(r, e)
			s.renderError(w, r, pageNotFound)
			return
		}
		s.storeFailed(w, r, "message by manage token", "", err)
		return
	}
	t := catalogFor(r)
	m := manageTextFor(t)
	refuse := func(status int, reason, detail string, args ...any) {
		e := s.senderEvent(r, audit.TypeManageRefused, mv)
		e.Reason, e.Detail = reason, detail
		s.denials.deny(r, e)
		msg := m.Refused[reason]
		if len(args) > 0 {
			msg = fmt.Sprintf(msg, args...)
		}
		data := &manageData{Action: "/s/" + url.PathEscape(token)}
		s.renderManage(w, r, status, "managerefused", managePageData{T: t, M: m, Title: m.RefusedTitle, Message: msg, Manage: data})
	}
	if !s.csrfValid(r, store.HashToken(token), now) {
		refuse(http.StatusForbidden, "csrf", "")
		return
	}
	done := ""
	switch r.PostForm.Get("action") {
	case "revoke":
		id := r.PostForm.Get("link")
		i := indexOfLink(mv, id)
		if i < 0 {
			// Never another message's link, whatever ID is posted.
			refuse(http.StatusNotFound, "unknown link", "link "+truncate(id, 64)+" is not part of this message")
			return
		}
		if !s.revokeLinks(w, r, mv, now, func(ctx context.Context) (int, error) {
			// RevokeLink does not say whether it was the first: -1,
			// "unknown", and the read-back below decides.
			return -1, s.store.RevokeLink(ctx, id, now)
		}, id) {
			return
		}
		done = doneRevoked
	case "revoke-all":
		if !s.revokeLinks(w, r, mv, now, func(ctx context.Context) (int, error) {
			return s.store.RevokeMessage(ctx, mv.Message.ID, now)
		}, "") {
			return
		}
		done = doneRevokedAll
	case "expiry":
		limit := s.expiryLimit(mv)
		raw := r.PostForm.Get("expires")
		exp, ok := parseExpiry(raw, s.location)
		switch {
		case !ok:
			refuse(http.StatusBadRequest, "bad expiry", "expires "+strconv.Quote(truncate(raw, maxExpiryField)))
			return
		case !exp.After(now):
			refuse(http.StatusBadRequest, "past expiry", "expires "+exp.UTC().Format(time.RFC3339))
			return
		case exp.After(limit):
			refuse(http.StatusBadRequest, "beyond max", "expires "+exp.UTC().Format(time.RFC3339)+" after "+limit.UTC().Format(time.RFC3339),
				t.formatTime(limit.In(s.location)))
			return
		case !store.ValidExpiry(exp):
			refuse(http.StatusBadRequest, "bad expiry", "expires "+exp.UTC().Format(time.RFC3339))
			return
		}
		for _, v := range mv.Links {
			if expiredAt(v.File.ExpiresAt, now) {
				refuse(http.StatusConflict, "expired", "file "+v.File.ID+" already expired")
				return
			}
		}
		if !s.changeExpiry(w, r, mv, exp) {
			return
		}
		done = doneExpiry
	default:
		refuse(http.StatusBadRequest, "bad action", "action "+strconv.Quote(truncate(r.PostForm.Get("action"), 32)))
		return
	}
	// Post/Redirect/Get: Back and reload never repeat the action.
	h := w.Header()
	h.Set("Location", "/s/"+url.PathEscape(token)+"?done="+done)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusSeeOther)
}

func indexOfLink(mv store.MessageView, id string) int {
	if id == "" {
		return -1
	}
	for i, v := range mv.Links {
		if v.Link.ID == id {
			return i
		}
	}
	return -1
}

// parseExpiry reads the datetime-local field in the server's zone
// (links.time_zone); seconds are optional.
func parseExpiry(v string, loc *time.Location) (time.Time, bool) {
	if v == "" || len(v) > maxExpiryField {
		return time.Time{}, false
	}
	for _, layout := range []string{datetimeLocal, datetimeLocal + ":05"} {
		if t, err := time.ParseInLocation(layout, v, loc); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// senderEvent starts an audit event for an action on the manage page.
func (s *Server) senderEvent(r *http.Request, typ audit.EventType, mv store.MessageView) audit.Event {
	e := s.webEvent(r, typ)
	e.Actor = actorSender
	e.MessageID = mv.Message.ID
	e.HeaderID = mv.Message.MessageID
	e.Sender = mv.Message.Sender
	return e
}

// revokeLinks runs a revocation (one link, or the whole message when
// only is "") and records link.revoked for every link it revoked, after
// the store write (see auditedStream for why that order). It answers the
// request itself when it fails and reports whether it succeeded.
func (s *Server) revokeLinks(w http.ResponseWriter, r *http.Request, mv store.MessageView, now time.Time,
	revoke func(ctx context.Context) (int, error), only string) bool {
	ctx, cancel := storeContext(r)
	defer cancel()
	n, err := revoke(ctx)
	if err != nil {
		s.storeFailed(w, r, "revoke by sender", only, err)
		return false
	}
	if n == 0 {
		// Everything was revoked already (another tab, another
		// instance): nothing to audit.
		return true
	}
	// Read back: a link counts as revoked here when it carries this
	// revocation's time and was not revoked before (the first time stays).
	// Two revocations racing with the very same nanosecond would both
	// claim it; real clocks do not give two requests that.
	after, err := s.store.MessageByID(ctx, mv.Message.ID)
	if err != nil {
		s.storeFailed(w, r, "message after revoke", only, err)
		return false
	}
	before := map[string]bool{}
	for _, v := range mv.Links {
		before[v.Link.ID] = !v.Link.RevokedAt.IsZero()
	}
	failed := false
	for _, v := range after.Links {
		if (only != "" && v.Link.ID != only) || before[v.Link.ID] || !v.Link.RevokedAt.Equal(now) {
			continue
		}
		e := withLink(s.senderEvent(r, audit.TypeLinkRevoked, mv), v)
		e.Actor = actorSender
		e.Reason = actorSender
		e.Detail = revokedBySender
		if s.record(r, e) != nil {
			failed = true
		}
	}
	if failed {
		// Revoked, but the log could not say so: tell the sender to
		// reload rather than pretend all went well.
		s.renderError(w, r, pageUnavailable)
		return false
	}
	s.log.Info("linkserver: links revoked by sender", "message_id", mv.Message.ID, "link_id", only)
	return true
}

// changeExpiry sets the new expiry and records link.expiry_changed for
// every link of the message.
func (s *Server) changeExpiry(w http.ResponseWriter, r *http.Request, mv store.MessageView, exp time.Time) bool {
	ctx, cancel := storeContext(r)
	defer cancel()
	if err := s.store.SetMessageExpiry(ctx, mv.Message.ID, exp); err != nil {
		s.storeFailed(w, r, "set expiry by sender", "", err)
		return false
	}
	failed := false
	for _, v := range mv.Links {
		old := effectiveExpiry(v)
		e := withLink(s.senderEvent(r, audit.TypeLinkExpiryChanged, mv), v)
		e.Actor = actorSender
		e.Expires = exp
		e.Detail = "from " + old.UTC().Format(time.RFC3339) + " to " + exp.UTC().Format(time.RFC3339) + " by sender"
		if s.record(r, e) != nil {
			failed = true
		}
	}
	if failed {
		s.renderError(w, r, pageUnavailable)
		return false
	}
	s.log.Info("linkserver: expiry changed by sender", "message_id", mv.Message.ID, "expires", exp)
	return true
}

// setManageCookie sets the CSRF cookie for manage pages (the landing
// page's scheme, scoped to /s/).
func (s *Server) setManageCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name:     csrfCookie,
		Value:    csrfCookieValue(r),
		Path:     manageCookiePath,
		HttpOnly: true,
		Secure:   s.secure(r),
		SameSite: http.SameSiteStrictMode,
	})
}

// renderManage is renderPage for the manage templates, with their CSP.
func (s *Server) renderManage(w http.ResponseWriter, r *http.Request, status int, name string, data managePageData) {
	buf := pageBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer pageBuffers.Put(buf)
	if err := manageTemplates.ExecuteTemplate(buf, name, data); err != nil {
		s.log.Error("linkserver: render page", "page", name, "err", err)
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString("<!doctype html><title>500</title><p>Internal error.</p>")
	}
	h := w.Header()
	setPageSecurityHeaders(h)
	h.Set("Content-Security-Policy", manageCSP)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Language", data.T.Lang)
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Add("Vary", "Accept-Language")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}
