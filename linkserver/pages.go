package linkserver

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// pageKind names an error page; each has a status and a text per language.
type pageKind int

const (
	pageNotFound pageKind = iota
	pageExpired
	pageRevoked
	pageLimitReached
	pageFileGone
	pageCSRF
	pageURLTimedOut
	pageMethodNotAllowed
	pageInternal
	pageUnavailable
	pageTooManyRequests
)

var pageStatus = map[pageKind]int{
	pageNotFound:         http.StatusNotFound,
	pageExpired:          http.StatusGone,
	pageRevoked:          http.StatusGone,
	pageLimitReached:     http.StatusGone,
	pageFileGone:         http.StatusGone,
	pageCSRF:             http.StatusForbidden,
	pageURLTimedOut:      http.StatusForbidden,
	pageMethodNotAllowed: http.StatusMethodNotAllowed,
	pageInternal:         http.StatusInternalServerError,
	pageUnavailable:      http.StatusServiceUnavailable,
	pageTooManyRequests:  http.StatusTooManyRequests,
}

// pageCSS is the only styling. It is inlined and allowed by its hash, so
// the CSP needs neither 'unsafe-inline' nor a per-response nonce.
const pageCSS = `body{margin:0;background:#f4f5f7;color:#1d2330;font:16px/1.5 system-ui,-apple-system,"Segoe UI","Hiragino Sans","Yu Gothic UI",Meiryo,sans-serif}` +
	`main{max-width:40rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12)}` +
	`h1{font-size:1.4rem;margin:0 0 1.5rem}` +
	`dl{display:grid;grid-template-columns:max-content 1fr;gap:.5rem 1.5rem;margin:0 0 2rem}` +
	`dt{color:#5a6270}dd{margin:0;overflow-wrap:anywhere}` +
	`.name{font-weight:600}code{font-size:.85rem;overflow-wrap:normal;word-break:normal}` +
	`button{font:inherit;font-weight:600;color:#fff;background:#1f5fbf;border:0;border-radius:6px;padding:.7rem 2rem;cursor:pointer}` +
	`button:hover{background:#174a96}.note{color:#5a6270;font-size:.9rem;margin-top:1.5rem}` +
	`@media (max-width:30rem){main{margin:0;border-radius:0}dl{grid-template-columns:1fr;gap:0}dd{margin-bottom:.6rem}}`

// pageCSP is the Content-Security-Policy of every HTML page.
var pageCSP = func() string {
	sum := sha256.Sum256([]byte(pageCSS))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}()

// The <style> body must be exactly pageCSS for the hash to match, so it is
// spliced into the template source rather than passed as data.
var pageTemplates = template.Must(template.New("pages").Parse(`
{{- define "top" -}}
<!doctype html>
<html lang="{{.T.Lang}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>{{.Title}}</title>
<style>` + pageCSS + `</style>
</head>
<body>
<main>
{{end}}

{{- define "bottom" -}}
</main>
</body>
</html>
{{end}}

{{- define "landing" -}}
{{template "top" .}}<h1>{{.T.LandingTitle}}</h1>
<dl>
<dt>{{.T.FileName}}</dt><dd class="name">{{.Landing.FileName}}</dd>
<dt>{{.T.Size}}</dt><dd>{{.Landing.SizeHuman}} ({{.Landing.SizeBytes}})</dd>
<dt>{{.T.Sender}}</dt><dd>{{.Landing.Sender}}</dd>
<dt>{{.T.Expires}}</dt><dd><time datetime="{{.Landing.ExpiresISO}}">{{.Landing.Expires}}</time></dd>
<dt>{{.T.SHA256}}</dt><dd><code>{{range $i, $g := .Landing.SHA256Groups}}{{if $i}}<wbr>{{end}}{{$g}}{{end}}</code></dd>
{{- if .Landing.DownloadsLeft}}
<dt>{{.T.DownloadsLeft}}</dt><dd>{{.Landing.DownloadsLeft}}</dd>
{{- end}}
{{- if .Landing.VerifiedAs}}
<dt>{{.Landing.VerifiedLabel}}</dt><dd>{{.Landing.VerifiedAs}}</dd>
{{- end}}
</dl>
{{- if .Landing.VerifyNote}}
<p class="note">{{.Landing.VerifyNote}}</p>
{{- end}}
<form method="post" action="{{.Landing.Action}}">
<input type="hidden" name="` + csrfField + `" value="{{.Landing.CSRF}}">
<button type="submit">{{.T.Download}}</button>
</form>
<p class="note">{{.T.LandingNote}}</p>
{{template "bottom" .}}
{{- end}}

{{- define "error" -}}
{{template "top" .}}<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{- if .Next}}
<p>{{.Next}}</p>
{{- end}}
{{template "bottom" .}}
{{- end}}
`))

// pageData is what every template sees.
type pageData struct {
	T       *catalog
	Title   string
	Message string       // error pages
	Next    string       // error pages: what the reader can do next
	Landing *landingData // landing page
	Verify  *verifyPage  // recipient verification forms
	Msg     *messageData // message page
}

type landingData struct {
	FileName      string
	SizeHuman     string
	SizeBytes     string
	Sender        string
	Expires       string
	ExpiresISO    string
	SHA256Groups  []string // the hash in groups of shaGroup characters
	DownloadsLeft string   // "" when unlimited
	Action        string
	CSRF          string
	// Recipient verification: VerifiedAs is the recipient the browser's
	// session proves (with its label); VerifyNote says a code will be
	// asked for. Both "" without verification.
	VerifiedLabel string
	VerifiedAs    string
	VerifyNote    string
}

var pageBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// setPageSecurityHeaders sets the headers every HTML page carries.
func setPageSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Robots-Tag", "noindex, nofollow")
}

// renderPage executes a template into a buffer first, so a template error
// becomes a clean 500 instead of half a page.
func (s *Server) renderPage(w http.ResponseWriter, r *http.Request, status int, name string, data pageData) {
	buf := pageBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer pageBuffers.Put(buf)
	if err := pageTemplates.ExecuteTemplate(buf, name, data); err != nil {
		s.log.Error("linkserver: render page", "page", name, "err", err)
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString("<!doctype html><title>500</title><p>Internal error.</p>")
	}
	h := w.Header()
	setPageSecurityHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Language", data.T.Lang)
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Add("Vary", "Accept-Language")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// renderError sends the error page of kind in the request's language.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, kind pageKind) {
	s.renderErrorAt(w, r, kind, time.Time{})
}

// renderErrorAt sends the error page of kind; for an expired or revoked
// link, at (when known) is the moment it stopped working, and the page
// names that date.
func (s *Server) renderErrorAt(w http.ResponseWriter, r *http.Request, kind pageKind, at time.Time) {
	t := catalogFor(r)
	text := t.errors[kind]
	if kind == pageUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	message := text.Message
	if !at.IsZero() && text.MessageAt != "" {
		message = fmt.Sprintf(text.MessageAt, t.formatTime(at.In(s.location)))
	}
	s.renderPage(w, r, pageStatus[kind], "error", pageData{T: t, Title: text.Title, Message: message, Next: text.Next})
}

// shaGroup is the width of the SHA-256 groups on the landing page: the
// page breaks lines only between groups (<wbr>), so a line never ends
// with a few characters alone and copying still gives one string.
const shaGroup = 16

func groupHash(h string) []string {
	var out []string
	for len(h) > shaGroup {
		out = append(out, h[:shaGroup])
		h = h[shaGroup:]
	}
	return append(out, h)
}
