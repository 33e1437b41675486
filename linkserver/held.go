package linkserver

// The pages of held mail, base_url/h/{token}: a sender's Cancel and Send
// now links (action hold) and an approver's View, Approve and Reject links
// (action approve). GET and HEAD only show what the button will do (mail
// scanners open every link); the POST of the page's one form acts, once,
// with the landing page's CSRF protection (cross-origin check, the
// SameSite=Strict cookie, and a form token bound to this link's token
// hash). Unknown tokens answer 404; used, decided, expired links and
// messages no longer held answer 410 with a page that says which. Every
// refused POST is audited as hold.refused.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/attachgate/attachgate/audit"
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
<dt>{{.L.From}}</dt><dd>{{if .Sender}}{{.Sender}}{{else}}{{.Page.T.NoSender}}{{end}}</dd>
<dt>{{.L.To}}</dt><dd>{{range $i, $r := .Recipients}}{{if $i}}, {{end}}{{$r}}{{end}}</dd>
<dt>{{.L.Subject}}</dt><dd class="name">{{.Subject}}</dd>
{{- if .Files}}
<dt>{{.L.Files}}</dt><dd>{{range $i, $f := .Files}}{{if $i}}, {{end}}{{$f}}{{end}}</dd>
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
{{- if .Truncated}}<p class="note">{{.L.Truncated}}</p>{{end}}
{{- end}}
{{- if .Button}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="` + csrfField + `" value="{{.CSRF}}">
{{- if .AskReason}}
<p><label for="reason">{{.L.Reason}}</label><br>
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
	L          heldLabels
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

// heldLabels are the fixed words of the held pages.
type heldLabels struct{ From, To, Subject, Files, Truncated, Reason string }

func labelsFor(r *http.Request) heldLabels {
	if catalogFor(r).Lang == "ja" {
		return heldLabels{From: "送信者", To: "宛先", Subject: "件名", Files: "ファイル",
			Truncated: "本文の先頭部分だけを表示しています。", Reason: "送信者への理由(任意)"}
	}
	return heldLabels{From: "From", To: "To", Subject: "Subject", Files: "Files",
		Truncated: "Only the beginning of the text is shown.", Reason: "Reason for the sender (optional)"}
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
		p.Heading = tr(r, "Cancel this message?", "このメールの送信を取り消しますか?")
		p.Paragraphs = []string{tr(r, "The message below is held. Cancel deletes it: it is never sent to anyone.", "下のメールは保留中です。取り消すとメールは削除され、誰にも送信されません。")}
		p.Button = tr(r, "Cancel the message", "送信を取り消す")
	case quarantine.TicketSendNow:
		p.Heading = tr(r, "Send this message now?", "このメールを今すぐ送信しますか?")
		p.Paragraphs = []string{tr(r, "The message below is held. Send now sends it at once instead of at the time shown.", "下のメールは保留中です。表示の時刻を待たずに今すぐ送信します。")}
		p.Button = tr(r, "Send now", "今すぐ送信する")
	case quarantine.TicketApprove:
		p.Heading = tr(r, "Approve this message?", "このメールを承認しますか?")
		p.Paragraphs = []string{tr(r, "The message below waits for approval. Approve sends it to its recipients.", "下のメールは承認待ちです。承認すると宛先に送信されます。")}
		p.Button = tr(r, "Approve and send", "承認して送信する")
	case quarantine.TicketReject:
		p.Heading = tr(r, "Reject this message?", "このメールを却下しますか?")
		p.Paragraphs = []string{tr(r, "The message below waits for approval. Reject deletes it without sending it; the sender is told, with your reason if you give one.", "下のメールは承認待ちです。却下するとメールは送信されずに削除され、送信者に(理由を書いた場合は理由とともに)通知されます。")}
		p.Button = tr(r, "Reject", "却下する")
		p.AskReason = true
	case quarantine.TicketView:
		p.Heading = tr(r, "Message waiting for approval", "承認待ちのメール")
		p.Paragraphs = []string{tr(r, "This is the text of the message (its files are not shown). Use the Approve or Reject link in your mail to decide.", "メールの本文です(ファイルは表示しません)。承認・却下は、依頼メールのリンクから行ってください。")}
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
		s.heldForgedPost(r, token)
		s.renderError(w, r, pageCSRF)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), actTimeout)
	defer cancel()
	t, err := s.held.Act(ctx, token, r.PostForm.Get(reasonField))
	var de *relay.Error
	switch {
	case errors.As(err, &de) && t.Kind == quarantine.TicketSendNow:
		p := s.heldPage(r, tr(r, "Not sent yet", "まだ送信されていません"), tr(r, "The next mail server did not take the message just now. It stays held and goes out at its release time, or try Send now again in a few minutes.", "次のメールサーバーが今はメールを受け取りませんでした。メールは保留されたままで、予定の時刻に送信されます。数分後に「今すぐ送信する」をもう一度試すこともできます。"))
		s.renderHeld(w, r, http.StatusServiceUnavailable, p)
		return
	case errors.As(err, &de):
		p := s.heldPage(r, tr(r, "Approved", "承認しました"), tr(r, "You approved the message. The next mail server did not take it just now; it is retried automatically.", "メールを承認しました。次のメールサーバーが今は受け取りませんでしたが、自動的に再送されます。"))
		s.renderHeld(w, r, http.StatusAccepted, p)
		return
	case errors.Is(err, quarantine.ErrTicketClosed):
		s.heldRefused(r, t, closedReason(t.State))
		s.heldClosed(w, r, t)
		return
	case errors.Is(err, quarantine.ErrTokenUnknown):
		// Purged after its page was shown.
		s.heldRefused(r, t, "unknown")
		s.heldError(w, r, t, err)
		return
	case errors.Is(err, quarantine.ErrNotFound):
		s.heldRefused(r, t, "gone") // released or deleted by an admin meanwhile
		s.heldError(w, r, t, err)
		return
	case err != nil:
		s.heldError(w, r, t, err)
		return
	}
	var p heldPage
	switch t.Kind {
	case quarantine.TicketCancel:
		p = s.heldPage(r, tr(r, "Message cancelled", "送信を取り消しました"), tr(r, "The message has been deleted. It was not sent and will not be.", "メールは削除されました。送信されておらず、今後も送信されません。"))
	case quarantine.TicketSendNow:
		p = s.heldPage(r, tr(r, "Message sent", "送信しました"), tr(r, "The message has been sent to its recipients.", "メールを宛先に送信しました。"))
	case quarantine.TicketApprove:
		p = s.heldPage(r, tr(r, "Message approved", "承認しました"), tr(r, "You approved the message; it has been sent. The sender is told.", "メールを承認し、送信しました。送信者に通知します。"))
	case quarantine.TicketReject:
		p = s.heldPage(r, tr(r, "Message rejected", "却下しました"), tr(r, "You rejected the message; it was not sent. The sender is told.", "メールを却下しました。送信されません。送信者に通知します。"))
	}
	s.renderHeld(w, r, http.StatusOK, p)
}

// heldShow starts a page that shows the held message of t.
func (s *Server) heldShow(r *http.Request, t quarantine.Ticket) heldPage {
	p := heldPage{Page: pageData{T: catalogFor(r), Title: tr(r, "Held message", "保留中のメール")}, L: labelsFor(r), Show: true, Sender: t.Sender,
		Recipients: t.Recipients, Subject: t.Subject, Files: t.Files}
	if !t.Deadline.IsZero() {
		p.When = catalogFor(r).formatTime(t.Deadline.In(s.location))
		p.WhenLabel = tr(r, "Sent at", "送信予定")
		if t.Kind != quarantine.TicketCancel && t.Kind != quarantine.TicketSendNow {
			p.WhenLabel = tr(r, "Rejected unless approved by", "承認期限")
		}
	}
	return p
}

func (s *Server) heldPage(r *http.Request, heading string, paragraphs ...string) heldPage {
	return heldPage{Page: pageData{T: catalogFor(r), Title: heading}, L: labelsFor(r), Heading: heading, Paragraphs: paragraphs}
}

// heldClosed answers a link that can no longer act: 410 and why.
func (s *Server) heldClosed(w http.ResponseWriter, r *http.Request, t quarantine.Ticket) {
	at := func(tm time.Time) string { return catalogFor(r).formatTime(tm.In(s.location)) }
	var p heldPage
	switch t.State {
	case quarantine.TicketUsed:
		p = s.heldPage(r, tr(r, "Link already used", "使用済みのリンク"), tr(r, "This link has already been used (on "+at(t.UsedAt)+"). It works only once.", "このリンクは使用済みです("+at(t.UsedAt)+")。使えるのは一度だけです。"))
	case quarantine.TicketDecided:
		p = s.heldPage(r, tr(r, "Already decided", "判断済み"), decidedText(r, t, at))
	case quarantine.TicketExpired:
		if t.Kind == quarantine.TicketCancel || t.Kind == quarantine.TicketSendNow {
			p = s.heldPage(r, tr(r, "Hold ended", "保留は終了しました"), tr(r, "The hold ended on "+at(t.Deadline)+"; the message has been released for delivery and can no longer be cancelled.", "保留は "+at(t.Deadline)+" に終了し、メールは送信に回されました。取り消すことはできません。"))
		} else {
			p = s.heldPage(r, tr(r, "Approval time over", "承認期限切れ"), tr(r, "Nobody approved the message by "+at(t.Deadline)+"; it is rejected.", at(t.Deadline)+" までに承認されなかったため、メールは却下されます。"))
		}
	default:
		p = s.heldPage(r, tr(r, "No longer held", "保留されていません"), tr(r, "This message is no longer held: it has been sent or removed.", "このメールはもう保留されていません。送信されたか、削除されました。"))
	}
	s.renderHeld(w, r, http.StatusGone, p)
}

// decidedText says what became of the message.
func decidedText(r *http.Request, t quarantine.Ticket, at func(time.Time) string) string {
	when := at(t.DecidedAt)
	switch t.Decision {
	case quarantine.DecisionCancelled:
		return tr(r, "The sender cancelled this message on "+when+"; it was not sent.",
			"送信者が "+when+" に送信を取り消しました。メールは送信されていません。")
	case quarantine.DecisionSent:
		return tr(r, "The sender sent this message on "+when+".", "送信者が "+when+" に送信しました。")
	case quarantine.DecisionApproved:
		return tr(r, t.DecidedBy+" approved this message on "+when+"; it has been sent.",
			t.DecidedBy+" が "+when+" に承認し、メールは送信されました。")
	case quarantine.DecisionRejected:
		s := tr(r, t.DecidedBy+" rejected this message on "+when+"; it was not sent.",
			t.DecidedBy+" が "+when+" に却下しました。メールは送信されていません。")
		if t.Reason != "" {
			s += tr(r, " Reason: ", " 理由: ") + t.Reason
		}
		return s
	case quarantine.DecisionExpired:
		return tr(r, "Nobody approved this message in time; it was rejected on "+when+".",
			"期限までに承認されなかったため、"+when+" に却下されました。")
	}
	return tr(r, "This message is no longer held.", "このメールはもう保留されていません。")
}

// tr picks the English or the Japanese text by Accept-Language.
func tr(r *http.Request, en, ja string) string {
	if catalogFor(r).Lang == "ja" {
		return ja
	}
	return en
}

// heldForgedPost puts a POST without a valid form on record: csrf,
// naming the message and link when the token is one (a read, as the page's
// GET does; the denial limit bounds how many), or unknown.
func (s *Server) heldForgedPost(r *http.Request, token string) {
	reason, t := "unknown", quarantine.Ticket{}
	if len(token) <= maxTokenLen {
		ctx, cancel := storeContext(r)
		defer cancel()
		tk, err := s.held.Ticket(ctx, token)
		if !errors.Is(err, quarantine.ErrTokenUnknown) {
			reason = "csrf"
		}
		if err == nil {
			t = tk
		}
	}
	s.heldRefused(r, t, reason)
}

// heldRefused puts a refused POST on a held message's link on record
// (hold.refused). Like a refused POST on /d/, it counts towards the
// client's denial limit and is aggregated beyond the burst, so replaying a
// used link's form cannot flood the audit log. GET and HEAD are never
// counted: an unknown token on GET is a plain 404, as on /d/, so a page's
// images pointing at invented links cannot lock a client out.
func (s *Server) heldRefused(r *http.Request, t quarantine.Ticket, reason string) {
	e := s.webEvent(r, audit.TypeHoldRefused)
	e.Reason = reason
	if t.ItemID != "" {
		e.MessageID, e.Sender = t.ItemID, t.Sender
		e.Detail = fmt.Sprintf("%s link mailed to %s", t.Kind, t.Party)
	}
	s.denials.deny(r, e)
}

// closedReason names why a link can no longer act, for hold.refused.
func closedReason(st quarantine.TicketState) string {
	switch st {
	case quarantine.TicketUsed:
		return "used"
	case quarantine.TicketDecided:
		return "decided"
	case quarantine.TicketExpired:
		return "expired"
	}
	return "gone"
}

func (s *Server) heldError(w http.ResponseWriter, r *http.Request, t quarantine.Ticket, err error) {
	switch {
	case errors.Is(err, quarantine.ErrTokenUnknown):
		s.renderError(w, r, pageNotFound)
	case errors.Is(err, quarantine.ErrNotAnAction):
		w.Header().Set("Allow", "GET, HEAD")
		s.renderError(w, r, pageMethodNotAllowed)
	case errors.Is(err, quarantine.ErrNotFound):
		// Released or deleted by an admin between the look and the act.
		t.State = quarantine.TicketGone
		s.heldClosed(w, r, t)
	case errors.Is(err, quarantine.ErrBusy):
		p := s.heldPage(r, tr(r, "Busy right now", "処理中です"), tr(r, "The message is being sent or removed right now. Open the link again in a minute to see what became of it.", "このメールは今まさに送信または削除されています。1 分ほどしてからリンクを開き直すと結果を確認できます。"))
		s.renderHeld(w, r, http.StatusConflict, p)
	default:
		s.log.Error("linkserver: held mail", "route", r.Pattern, "msg", t.ItemID, "err", err)
		s.renderError(w, r, pageUnavailable)
	}
}

func (s *Server) renderHeld(w http.ResponseWriter, r *http.Request, status int, p heldPage) {
	if p.Page.T == nil {
		p.Page.T = catalogFor(r)
	}
	if p.L.From == "" {
		p.L = labelsFor(r)
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
	h.Add("Vary", "Accept-Language")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}
