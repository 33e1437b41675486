package linkserver

// The pages of held mail, base_url/h/{token}: a sender's Cancel and Send
// now links (action hold) and an approver's View, Approve and Reject links
// (action approve). GET and HEAD only show what the button will do (mail
// scanners open every link); the POST of the page's one form acts, once,
// with the landing page's CSRF protection (cross-origin check, the
// SameSite=Strict cookie, and a form token bound to this link's token
// hash). Unknown tokens answer 404; used, decided, expired links and
// messages no longer held answer 410 with a page that says which.

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/attachgate/attachgate/quarantine"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/store"
)

// HeldMail is what the /h/ pages need; *quarantine.Manager is one.
type HeldMail interface {
	// Ticket looks up the link token without changing anything.
	Ticket(ctx context.Context, token string) (quarantine.Ticket, error)
	// Act carries out what the link does, once.
	Act(ctx context.Context, token, reason string) (quarantine.Ticket, error)
}

const (
	heldCookiePath = "/h/"
	reasonField    = "reason"
	// actTimeout bounds one action: a release talks to the next hop.
	actTimeout = 2 * time.Minute
)

var heldTemplates = template.Must(pageTemplates.Clone())

func init() {
	template.Must(heldTemplates.New("held").Parse(`
{{- template "top" .Page -}}
<h1>{{.Heading}}</h1>
{{- range .Paragraphs}}
<p>{{.}}</p>
{{- end}}
{{- if .Show}}
<dl>
<dt>From</dt><dd>{{if .Sender}}{{.Sender}}{{else}}(none){{end}}</dd>
<dt>To</dt><dd>{{range $i, $r := .Recipients}}{{if $i}}, {{end}}{{$r}}{{end}}</dd>
<dt>Subject</dt><dd class="name">{{.Subject}}</dd>
{{- if .Files}}
<dt>Files</dt><dd>{{range $i, $f := .Files}}{{if $i}}, {{end}}{{$f}}{{end}}</dd>
{{- end}}
{{- if .When}}
<dt>{{.WhenLabel}}</dt><dd>{{.When}}</dd>
{{- end}}
</dl>
{{- end}}
{{- if .Header}}
<dl>
{{- range .Header}}
<dt>{{index . 0}}</dt><dd>{{index . 1}}</dd>
{{- end}}
</dl>
{{- end}}
{{- if .HasText}}
<pre style="white-space:pre-wrap;overflow-wrap:anywhere">{{.Text}}</pre>
{{- if .Truncated}}<p class="note">Only the beginning of the text is shown.</p>{{end}}
{{- end}}
{{- if .Button}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="` + csrfField + `" value="{{.CSRF}}">
{{- if .AskReason}}
<p><label for="reason">Reason for the sender (optional)</label><br>
<textarea id="reason" name="` + reasonField + `" rows="3" cols="50" maxlength="500"></textarea></p>
{{- end}}
<button type="submit">{{.Button}}</button>
</form>
{{- end}}
{{template "bottom" .Page}}`))
}

// heldPage is what the "held" template shows.
type heldPage struct {
	Page       pageData
	Heading    string
	Paragraphs []string
	Show       bool // the message's envelope and subject
	Sender     string
	Recipients []string
	Subject    string
	Files      []string
	WhenLabel  string
	When       string
	Header     [][2]string
	HasText    bool
	Text       string
	Truncated  bool
	Button     string
	AskReason  bool
	Action     string
	CSRF       string
}

// registerHeld adds the /h/ routes when held mail is served.
func (s *Server) registerHeld(mux *http.ServeMux, h HeldMail) {
	if h == nil {
		return
	}
	s.held = h
	mux.HandleFunc("GET /h/{token}", s.handleHeldPage)
	mux.HandleFunc("POST /h/{token}", s.handleHeldAct)
	mux.HandleFunc("/h/{token}", s.methodNotAllowed("GET, HEAD, POST"))
}

func (s *Server) handleHeldPage(w http.ResponseWriter, r *http.Request) {
	if s.refuseIfLimited(w, r) {
		return
	}
	token := r.PathValue("token")
	ctx, cancel := storeContext(r)
	defer cancel()
	t, err := s.held.Ticket(ctx, token)
	if err != nil {
		s.heldError(w, r, t, err)
		return
	}
	if t.State != quarantine.TicketOpen {
		s.heldClosed(w, r, t)
		return
	}
	p := s.heldShow(r, t)
	switch t.Kind {
	case quarantine.TicketCancel:
		p.Heading = "Cancel this message?"
		p.Paragraphs = []string{"The message below is held. Cancel deletes it: it is never sent to anyone."}
		p.Button = "Cancel the message"
	case quarantine.TicketSendNow:
		p.Heading = "Send this message now?"
		p.Paragraphs = []string{"The message below is held. Send now sends it at once instead of at the time shown."}
		p.Button = "Send now"
	case quarantine.TicketApprove:
		p.Heading = "Approve this message?"
		p.Paragraphs = []string{"The message below waits for approval. Approve sends it to its recipients."}
		p.Button = "Approve and send"
	case quarantine.TicketReject:
		p.Heading = "Reject this message?"
		p.Paragraphs = []string{"The message below waits for approval. Reject deletes it without sending it; the sender is told, with your reason if you give one."}
		p.Button = "Reject"
		p.AskReason = true
	case quarantine.TicketView:
		p.Heading = "Message waiting for approval"
		p.Paragraphs = []string{"This is the text of the message (its files are not shown). Use the Approve or Reject link in your mail to decide."}
		p.Header, p.HasText, p.Text, p.Truncated = t.Header, true, t.Text, t.TextTruncated
	}
	if p.Button != "" {
		http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: csrfCookieValue(r), Path: heldCookiePath,
			HttpOnly: true, Secure: s.secure(r), SameSite: http.SameSiteStrictMode})
		p.Action = "/h/" + url.PathEscape(token)
		p.CSRF = s.formToken(t.TokenHash, s.now())
	}
	s.renderHeld(w, r, http.StatusOK, p)
}

func (s *Server) handleHeldAct(w http.ResponseWriter, r *http.Request) {
	if s.refuseIfLimited(w, r) {
		return
	}
	token := r.PathValue("token")
	if len(token) > maxTokenLen || !s.csrfValid(r, store.HashToken(token), s.now()) {
		// A forged form token is bound to the link's token hash: one made
		// for another link, or none, is refused before any lookup.
		s.renderError(w, r, pageCSRF)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), actTimeout)
	defer cancel()
	t, err := s.held.Act(ctx, token, r.PostForm.Get(reasonField))
	var de *relay.Error
	switch {
	case errors.As(err, &de) && t.Kind == quarantine.TicketSendNow:
		p := s.heldPage(r, "Not sent yet", "The next mail server did not take the message just now. It stays held and goes out at its release time, or try Send now again in a few minutes.")
		s.renderHeld(w, r, http.StatusServiceUnavailable, p)
		return
	case errors.As(err, &de):
		p := s.heldPage(r, "Approved", "You approved the message. The next mail server did not take it just now; it is retried automatically.")
		s.renderHeld(w, r, http.StatusAccepted, p)
		return
	case errors.Is(err, quarantine.ErrTicketClosed):
		s.heldClosed(w, r, t)
		return
	case err != nil:
		s.heldError(w, r, t, err)
		return
	}
	var p heldPage
	switch t.Kind {
	case quarantine.TicketCancel:
		p = s.heldPage(r, "Message cancelled", "The message has been deleted. It was not sent and will not be.")
	case quarantine.TicketSendNow:
		p = s.heldPage(r, "Message sent", "The message has been sent to its recipients.")
	case quarantine.TicketApprove:
		p = s.heldPage(r, "Message approved", "You approved the message; it has been sent. The sender is told.")
	case quarantine.TicketReject:
		p = s.heldPage(r, "Message rejected", "You rejected the message; it was not sent. The sender is told.")
	}
	s.renderHeld(w, r, http.StatusOK, p)
}

// heldShow starts a page that shows the held message of t.
func (s *Server) heldShow(r *http.Request, t quarantine.Ticket) heldPage {
	p := heldPage{Page: pageData{T: english, Title: "Held message"}, Show: true, Sender: t.Sender,
		Recipients: t.Recipients, Subject: t.Subject, Files: t.Files}
	if !t.Deadline.IsZero() {
		p.When = english.formatTime(t.Deadline.In(s.location))
		p.WhenLabel = "Sent at"
		if t.Kind != quarantine.TicketCancel && t.Kind != quarantine.TicketSendNow {
			p.WhenLabel = "Rejected unless approved by"
		}
	}
	return p
}

func (s *Server) heldPage(_ *http.Request, heading string, paragraphs ...string) heldPage {
	return heldPage{Page: pageData{T: english, Title: heading}, Heading: heading, Paragraphs: paragraphs}
}

// heldClosed answers a link that can no longer act: 410 and why.
func (s *Server) heldClosed(w http.ResponseWriter, r *http.Request, t quarantine.Ticket) {
	at := func(tm time.Time) string { return english.formatTime(tm.In(s.location)) }
	var p heldPage
	switch t.State {
	case quarantine.TicketUsed:
		p = s.heldPage(r, "Link already used", "This link has already been used (on "+at(t.UsedAt)+"). It works only once.")
	case quarantine.TicketDecided:
		p = s.heldPage(r, "Already decided", decidedText(t, at))
	case quarantine.TicketExpired:
		if t.Kind == quarantine.TicketCancel || t.Kind == quarantine.TicketSendNow {
			p = s.heldPage(r, "Hold ended", "The hold ended on "+at(t.Deadline)+"; the message has been released for delivery and can no longer be cancelled.")
		} else {
			p = s.heldPage(r, "Approval time over", "Nobody approved the message by "+at(t.Deadline)+"; it is rejected.")
		}
	default:
		p = s.heldPage(r, "No longer held", "This message is no longer held: it has been sent or removed.")
	}
	s.renderHeld(w, r, http.StatusGone, p)
}

// decidedText says what became of the message.
func decidedText(t quarantine.Ticket, at func(time.Time) string) string {
	when := at(t.DecidedAt)
	switch t.Decision {
	case quarantine.DecisionCancelled:
		return "The sender cancelled this message on " + when + "; it was not sent."
	case quarantine.DecisionSent:
		return "The sender sent this message on " + when + "."
	case quarantine.DecisionApproved:
		return t.DecidedBy + " approved this message on " + when + "; it has been sent."
	case quarantine.DecisionRejected:
		s := t.DecidedBy + " rejected this message on " + when + "; it was not sent."
		if t.Reason != "" {
			s += " Reason: " + t.Reason
		}
		return s
	case quarantine.DecisionExpired:
		return "Nobody approved this message in time; it was rejected on " + when + "."
	}
	return "This message is no longer held."
}

func (s *Server) heldError(w http.ResponseWriter, r *http.Request, t quarantine.Ticket, err error) {
	switch {
	case errors.Is(err, quarantine.ErrTokenUnknown):
		s.renderError(w, r, pageNotFound)
	case errors.Is(err, quarantine.ErrNotAnAction):
		w.Header().Set("Allow", "GET, HEAD")
		s.renderError(w, r, pageMethodNotAllowed)
	case errors.Is(err, quarantine.ErrBusy):
		p := s.heldPage(r, "Busy right now", "The message is being sent or removed right now. Open the link again in a minute to see what became of it.")
		s.renderHeld(w, r, http.StatusConflict, p)
	default:
		s.log.Error("linkserver: held mail", "route", r.Pattern, "msg", t.ItemID, "err", err)
		s.renderError(w, r, pageUnavailable)
	}
}

func (s *Server) renderHeld(w http.ResponseWriter, r *http.Request, status int, p heldPage) {
	if p.Page.T == nil {
		p.Page.T = english
	}
	if p.Page.Title == "" {
		p.Page.Title = p.Heading
	}
	buf := pageBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer pageBuffers.Put(buf)
	if err := heldTemplates.ExecuteTemplate(buf, "held", p); err != nil {
		s.log.Error("linkserver: render held page", "err", err)
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString("<!doctype html><title>500</title><p>Internal error.</p>")
	}
	h := w.Header()
	setPageSecurityHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Language", p.Page.T.Lang)
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}
