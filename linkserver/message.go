package linkserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/text/language"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/bytesize"
	"github.com/attachgate/attachgate/store"
)

// The message page lists every file of one message:
//
//	GET  /m/{token}      the page; counts nothing (mail scanners pre-fetch)
//	POST /m/{token}      file={link ID}: counts that file's download, 303 to
//	                     the same signed URL a landing page gives
//	POST /m/{token}/all  Download all: counts one download of every file
//	                     still usable and streams them as one ZIP (zip.go)
//
// The POSTs use the landing page's CSRF protection (csrf.go), with the
// form token bound to the message page token's hash and the cookie scoped
// to /m/.
const (
	messageCookiePath = "/m/"
	// fileField names the link a message page's per-file form downloads.
	fileField = "file"
	// auditMessagePage is the Detail of events raised by the message page.
	auditMessagePage = "message page"
)

// messageText is what the message page and its ZIP say, in one language.
type messageText struct {
	Title        string
	Files        string
	State        string
	DownloadAll  string
	AllNote      string
	NoneUsable   string
	fileCount    func(n int, size string) string
	stateExpired string // %s is the time
	stateRevoked string // %s is the time
	stateLimit   string
	stateGone    string
	readmeName   string
	readmeIntro  string
}

var messageTexts = map[string]*messageText{
	"en": {
		Title:       "Files to download",
		Files:       "Files",
		State:       "State",
		DownloadAll: "Download all (ZIP)",
		AllNote:     "Download all saves every file that can still be downloaded in one ZIP file; each file counts one download. Nothing is counted until you press a button.",
		NoneUsable:  "None of these files can be downloaded any more. If you still need them, ask the sender.",
		fileCount: func(n int, size string) string {
			if n == 1 {
				return "1 file, " + size
			}
			return strconv.Itoa(n) + " files, " + size + " in all"
		},
		stateExpired: "Expired on %s",
		stateRevoked: "Withdrawn by the sender on %s",
		stateLimit:   "Download limit reached",
		stateGone:    "No longer stored",
		readmeName:   "README.txt",
		readmeIntro:  "These files of the message are not in this ZIP file:",
	},
	"ja": {
		Title:       "ダウンロードできるファイル",
		Files:       "ファイル",
		State:       "状態",
		DownloadAll: "すべてダウンロード (ZIP)",
		AllNote:     "「すべてダウンロード」は、まだダウンロードできるすべてのファイルを 1 つの ZIP ファイルにまとめて保存します。各ファイルのダウンロード回数が 1 回ずつ数えられます。ボタンを押すまでは何も数えられません。",
		NoneUsable:  "これらのファイルはいずれもダウンロードできなくなりました。必要な場合は、送信者にお問い合わせください。",
		fileCount: func(n int, size string) string {
			return strconv.Itoa(n) + " 個のファイル、合計 " + size
		},
		stateExpired: "%s に有効期限が切れました",
		stateRevoked: "%s に送信者によって取り消されました",
		stateLimit:   "ダウンロード回数の上限に達しました",
		stateGone:    "保存されていません",
		readmeName:   "README.txt",
		readmeIntro:  "このメッセージの次のファイルは、この ZIP ファイルに含まれていません:",
	},
}

// The message page's template, on top of pages.go's "top" and "bottom".
func init() {
	const src = `{{define "message"}}{{template "top" .}}<h1>{{.Msg.Text.Title}}</h1>
<dl>
<dt>{{.T.Sender}}</dt><dd>{{.Msg.Sender}}</dd>
<dt>{{.Msg.Text.Files}}</dt><dd>{{.Msg.Count}}</dd>
</dl>
{{- if .Msg.Notice}}
<p>{{.Msg.Notice}}</p>
{{- end}}
{{- if .Msg.AllAction}}
<form method="post" action="{{.Msg.AllAction}}">
<input type="hidden" name="` + csrfField + `" value="{{.Msg.CSRF}}">
<button type="submit">{{.Msg.Text.DownloadAll}}</button>
</form>
<p class="note">{{.Msg.Text.AllNote}}</p>
{{- end}}
{{- range .Msg.Files}}
<section aria-labelledby="{{.HeadingID}}">
<h2 id="{{.HeadingID}}" class="name">{{.Name}}</h2>
<dl>
<dt>{{$.T.Size}}</dt><dd>{{.SizeHuman}} ({{.SizeBytes}})</dd>
<dt>{{$.T.SHA256}}</dt><dd><code>{{range $i, $g := .SHA256Groups}}{{if $i}}<wbr>{{end}}{{$g}}{{end}}</code></dd>
<dt>{{$.T.Expires}}</dt><dd><time datetime="{{.ExpiresISO}}">{{.Expires}}</time></dd>
{{- if .DownloadsLeft}}
<dt>{{$.T.DownloadsLeft}}</dt><dd>{{.DownloadsLeft}}</dd>
{{- end}}
{{- if .State}}
<dt>{{$.Msg.Text.State}}</dt><dd>{{.State}}</dd>
{{- end}}
</dl>
{{- if not .State}}
<form method="post" action="{{$.Msg.Action}}">
<input type="hidden" name="` + csrfField + `" value="{{$.Msg.CSRF}}">
<input type="hidden" name="` + fileField + `" value="{{.LinkID}}">
<button type="submit" aria-describedby="{{.HeadingID}}">{{$.T.Download}}</button>
</form>
{{- end}}
</section>
{{- end}}
{{template "bottom" .}}
{{- end}}`
	if _, err := pageTemplates.New("message").Parse(src); err != nil {
		panic(fmt.Sprintf("linkserver: message page template: %v", err))
	}
}

// messageData is what the message page's template sees.
type messageData struct {
	Text      *messageText
	Sender    string
	Count     string
	Notice    string
	Files     []messageFile
	Action    string // per-file form
	AllAction string // "" when no file is usable
	CSRF      string
}

type messageFile struct {
	HeadingID     string
	LinkID        string
	Name          string
	SizeHuman     string
	SizeBytes     string
	SHA256Groups  []string
	Expires       string
	ExpiresISO    string
	DownloadsLeft string // "" when unlimited
	State         string // "" when usable; otherwise why not
}

// messageCatalog picks the page language: the visitor's Accept-Language
// when it asks for English or Japanese, else the message's language.
func messageCatalog(r *http.Request, lang string) *catalog {
	if header := r.Header.Get("Accept-Language"); header != "" {
		if tags, _, err := language.ParseAcceptLanguage(header); err == nil && len(tags) > 0 {
			if _, i, c := languageMatcher.Match(tags...); c != language.No {
				return catalogs[i]
			}
		}
	}
	if lang == "ja" {
		return japanese
	}
	return english
}

func textsFor(t *catalog) *messageText {
	if m, ok := messageTexts[t.Lang]; ok {
		return m
	}
	return messageTexts["en"]
}

// messageByToken finds the message whose page token is token.
func (s *Server) messageByToken(r *http.Request, token string) (store.MessageView, error) {
	if !plausibleToken(token) {
		return store.MessageView{}, store.ErrNotFound
	}
	ctx, cancel := storeContext(r)
	defer cancel()
	mv, err := s.store.MessageByTokenHash(ctx, store.PageToken, store.HashToken(token))
	if err != nil {
		return store.MessageView{}, fmt.Errorf("look up message by page token: %w", err)
	}
	return mv, nil
}

// messageEvent starts an audit event about message m for a visitor,
// verified as recipient when recipient is not "".
func (s *Server) messageEvent(r *http.Request, typ audit.EventType, m store.Message, recipient string) audit.Event {
	e := s.webEvent(r, typ)
	e.MessageID = m.ID
	e.HeaderID = m.MessageID
	e.Sender = m.Sender
	if recipient != "" {
		e.Recipients = []string{recipient}
	}
	return e
}

// linkEvent is an audit event about one link of a message page.
func (s *Server) linkEvent(r *http.Request, typ audit.EventType, v store.LinkView, recipient string) audit.Event {
	e := withLink(s.webEvent(r, typ), v)
	if recipient != "" {
		e.Recipients = []string{recipient}
	}
	return e
}

// recordAll appends events in one batch, surviving the client hanging up,
// as record does.
func (s *Server) recordAll(r *http.Request, events []audit.Event) error {
	if len(events) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	if err := audit.RecordAll(ctx, s.audit, events); err != nil {
		s.log.Error("linkserver: audit record failed",
			"event", events[0].Type, "message_id", events[0].MessageID, "events", len(events), "err", err)
		return fmt.Errorf("record %d audit events: %w", len(events), err)
	}
	return nil
}

// handleMessage shows the message page for GET and HEAD. It counts
// nothing; it records one link.viewed per file listed.
func (s *Server) handleMessage(w http.ResponseWriter, r *http.Request) {
	if s.refuseIfLimited(w, r) {
		return
	}
	now := s.now()
	token := r.PathValue("token")
	mv, err := s.messageByToken(r, token)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// Unknown tokens are not audited: anyone can invent them.
			// Messages have no tombstones: a purged message is unknown.
			s.renderError(w, r, pageNotFound)
			return
		}
		s.storeFailed(w, r, "message by token", "", err)
		return
	}
	recipient, ok := s.requireRecipient(w, r, mv.Message)
	if !ok {
		return
	}
	events := make([]audit.Event, 0, len(mv.Links))
	for _, v := range mv.Links {
		e := s.linkEvent(r, audit.TypeLinkViewed, v, recipient)
		e.Detail = auditMessagePage
		if state := linkState(v, now); state != nil {
			_, e.Reason = denial(state)
		}
		events = append(events, e)
	}
	// No audit, no page.
	if err := s.recordAll(r, events); err != nil {
		s.renderError(w, r, pageUnavailable)
		return
	}
	s.setMessageCSRFCookie(w, r)
	s.renderMessage(w, r, mv, token, now, "")
}

// renderMessage sends the message page; its status is 410 when no file
// can be downloaded any more. notice, when set, is shown above the files.
func (s *Server) renderMessage(w http.ResponseWriter, r *http.Request, mv store.MessageView, token string, now time.Time, notice string) {
	t := messageCatalog(r, mv.Message.Lang)
	mt := textsFor(t)
	action := "/m/" + url.PathEscape(token)
	data := &messageData{
		Text:   mt,
		Sender: mv.Message.Sender,
		Notice: notice,
		Action: action,
		CSRF:   s.formToken(mv.Message.PageTokenHash, now),
	}
	if data.Sender == "" {
		data.Sender = t.NoSender
	}
	var total int64
	usable := 0
	for i, v := range mv.Links {
		expires := effectiveExpiry(v).In(s.location)
		f := messageFile{
			HeadingID:    "file-" + strconv.Itoa(i+1),
			LinkID:       v.Link.ID,
			Name:         v.File.Name,
			SizeHuman:    bytesize.Human(v.File.Size),
			SizeBytes:    t.byteCount(v.File.Size),
			SHA256Groups: groupHash(v.File.SHA256),
			Expires:      t.formatTime(expires),
			ExpiresISO:   expires.Format(time.RFC3339),
			State:        stateText(t, mt, v, linkState(v, now), s.location),
		}
		if limit := v.Link.MaxDownloads; limit > 0 {
			f.DownloadsLeft = strconv.Itoa(max(limit-v.Link.Downloads, 0))
		}
		if f.State == "" {
			usable++
		}
		total += v.File.Size
		data.Files = append(data.Files, f)
	}
	data.Count = mt.fileCount(len(mv.Links), bytesize.Human(total))
	status := http.StatusOK
	if usable > 0 {
		data.AllAction = action + "/all"
	} else {
		status = http.StatusGone
		if data.Notice == "" {
			data.Notice = mt.NoneUsable
		}
	}
	s.renderPage(w, r, status, "message", pageData{T: t, Title: mt.Title, Msg: data})
}

// stateText says why a file cannot be downloaded; "" when it can.
func stateText(t *catalog, mt *messageText, v store.LinkView, state error, loc *time.Location) string {
	switch {
	case state == nil:
		return ""
	case errors.Is(state, store.ErrRevoked):
		return fmt.Sprintf(mt.stateRevoked, t.formatTime(v.Link.RevokedAt.In(loc)))
	case errors.Is(state, store.ErrExpired):
		return fmt.Sprintf(mt.stateExpired, t.formatTime(effectiveExpiry(v).In(loc)))
	case errors.Is(state, store.ErrLimit):
		return mt.stateLimit
	}
	return mt.stateGone
}

// setMessageCSRFCookie sets the CSRF cookie for the message page's forms.
// It is the landing page's cookie scoped to /m/; its value only has to
// be well-formed (see csrf.go), so tabs opened in any order all work.
func (s *Server) setMessageCSRFCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name:     csrfCookie,
		Value:    csrfCookieValue(r),
		Path:     messageCookiePath,
		HttpOnly: true,
		Secure:   s.secure(r),
		SameSite: http.SameSiteStrictMode,
	})
}

// messagePost is the common start of the message page's POSTs: the
// message, CSRF and the verification gate. When !ok the answer is sent.
func (s *Server) messagePost(w http.ResponseWriter, r *http.Request, now time.Time) (mv store.MessageView, recipient string, ok bool) {
	if s.refuseIfLimited(w, r) {
		return mv, "", false
	}
	mv, err := s.messageByToken(r, r.PathValue("token"))
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			denied := s.webEvent(r, audit.TypeDownloadDenied)
			denied.Reason = "unknown"
			denied.Detail = auditMessagePage
			s.denials.deny(r, denied)
			s.renderError(w, r, pageNotFound)
			return mv, "", false
		}
		s.storeFailed(w, r, "message by token", "", err)
		return mv, "", false
	}
	if !s.csrfValid(r, mv.Message.PageTokenHash, now) {
		denied := s.messageEvent(r, audit.TypeDownloadDenied, mv.Message, "")
		denied.Reason = "csrf"
		denied.Detail = auditMessagePage
		s.denials.deny(r, denied)
		s.renderError(w, r, pageCSRF)
		return mv, "", false
	}
	recipient, ok = s.requireRecipient(w, r, mv.Message)
	return mv, recipient, ok
}

// handleMessageFile is a message page's per-file form: it counts that
// file's download and redirects to the signed URL /d/ would give.
func (s *Server) handleMessageFile(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	mv, recipient, ok := s.messagePost(w, r, now)
	if !ok {
		return
	}
	linkID := r.PostForm.Get(fileField)
	view, found := linkOfMessage(mv, linkID)
	if !found {
		// Another message's link, a made-up one, or none: the page token
		// opens only its own files.
		denied := s.messageEvent(r, audit.TypeDownloadDenied, mv.Message, recipient)
		denied.Reason = "unknown"
		denied.Detail = "message page: the file asked for is not part of this message"
		s.denials.deny(r, denied)
		s.renderError(w, r, pageNotFound)
		return
	}
	denied := s.linkEvent(r, audit.TypeDownloadDenied, view, recipient)
	denied.Detail = auditMessagePage
	if err := linkState(view, now); err != nil {
		s.deny(w, r, view, denied, err)
		return
	}
	s.redirectToFile(w, r, view, denied, recipient, "message page", now)
}

// linkOfMessage finds the link with id among mv's links.
func linkOfMessage(mv store.MessageView, id string) (store.LinkView, bool) {
	if id == "" {
		return store.LinkView{}, false
	}
	for _, v := range mv.Links {
		if v.Link.ID == id {
			return v, true
		}
	}
	return store.LinkView{}, false
}
