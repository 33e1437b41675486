package linkserver

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
)

// fileCSP keeps a downloaded file inert even if a browser ignored
// Content-Disposition and rendered it.
const fileCSP = "default-src 'none'; sandbox"

// handleFile streams the decrypted file behind a signed URL, for GET and
// HEAD, with Range and If-Range through http.ServeContent. The download was
// counted by the POST that issued the URL; this records download.ok once
// per GET that actually sends content.
func (s *Server) handleFile(w http.ResponseWriter, r *http.Request) {
	if s.refuseIfLimited(w, r) {
		return
	}
	now := s.now()
	linkID := r.PathValue("id")
	query := r.URL.Query()
	if !s.verifyFileURL(linkID, query.Get("e"), query.Get("r"), query.Get("s"), now) {
		s.renderError(w, r, pageURLTimedOut)
		return
	}

	ctx, cancel := storeContext(r)
	view, err := s.store.LinkByID(ctx, linkID)
	cancel()
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// Signed but gone: the file was purged after the POST.
			s.renderError(w, r, pageFileGone)
			return
		}
		s.storeFailed(w, r, "link by id", linkID, fmt.Errorf("look up link %s: %w", linkID, err))
		return
	}
	// Revocation and expiry apply even to a URL signed a moment ago; the
	// limit does not, since the POST already counted this download.
	if state := linkState(view, now); errors.Is(state, store.ErrRevoked) || errors.Is(state, store.ErrExpired) {
		s.deny(w, r, view, withLink(s.webEvent(r, audit.TypeDownloadDenied), view), state)
		return
	}

	blob, err := s.blobs.Open(view.File.ID, view.File.KeyID)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("linkserver: blob missing for live link",
				"link_id", linkID, "file_id", view.File.ID, "err", err)
			s.renderError(w, r, pageFileGone)
			return
		}
		s.log.Error("linkserver: open blob",
			"link_id", linkID, "file_id", view.File.ID, "key_id", view.File.KeyID, "err", err)
		s.renderError(w, r, pageInternal)
		return
	}
	defer blob.Close()
	if blob.Size() != view.File.Size {
		s.log.Error("linkserver: blob size differs from metadata",
			"link_id", linkID, "file_id", view.File.ID, "blob_size", blob.Size(), "file_size", view.File.Size)
		s.renderError(w, r, pageInternal)
		return
	}

	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", contentDisposition(view.File.Name))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "private, no-store")
	h.Set("Content-Security-Policy", fileCSP)
	h.Set("Referrer-Policy", "no-referrer")
	if isLowerHex(view.File.SHA256) {
		// A strong validator, so If-Range resumes only the same bytes.
		h.Set("ETag", `"sha256:`+view.File.SHA256+`"`)
	}

	// At most maxRanges non-overlapping ranges; anything else gets the
	// whole file once (see checkRanges).
	if rng := r.Header.Get("Range"); rng != "" && !rangesAcceptable(rng, view.File.Size) {
		r.Header.Del("Range")
		r.Header.Del("If-Range")
	}
	ok := withLink(s.webEvent(r, audit.TypeDownloadOK), view)
	if view.Message.Verify != store.VerifyNone {
		// The signed URL names the recipient the POST verified; a URL
		// signed without one needs the session cookie.
		rcpt, verified := signedRecipient(view.Message, query.Get("r"))
		if !verified {
			rcpt, verified = s.verifiedRecipient(r, view.Message)
		}
		if !verified {
			denied := withLink(s.webEvent(r, audit.TypeDownloadDenied), view)
			denied.Reason = reasonUnverified
			s.denials.deny(r, denied)
			s.renderError(w, r, pageURLTimedOut)
			return
		}
		ok.Recipients = []string{rcpt}
	}
	if rng := r.Header.Get("Range"); rng != "" {
		ok.Detail = "range " + truncate(rng, 200)
	}
	if r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
		// Nothing left to read: a download may outlive ReadTimeout.
		clearReadDeadline(w)
	}
	sw := &auditedStream{ResponseWriter: w, server: s, request: r, event: ok, view: view,
		rc: http.NewResponseController(w)}
	defer func() {
		if sw.inFlight {
			s.inFlight.done(view.Link.ID)
		}
	}()
	http.ServeContent(sw, r, "", view.File.CreatedAt, blob)
}

// auditedStream records download.ok when a GET's 200 or 206 header is
// about to go out, i.e. when content is about to flow (not for 304, 412,
// 416 or HEAD). If the audit log refuses the event, the client gets a 503
// instead of the file.
//
// Revocation is ordered against the audit log: download.ok is recorded
// first, then the link is read again, and only a link still not revoked
// streams. So a download that sends anything has its download.ok before
// the link.revoked of a revoke that lands later (the revoke writes the
// store before recording link.revoked). A request that loses that race
// sends nothing and records download.denied (revoked) right after its
// download.ok. While streaming, the link is read again every
// revokeCheckInterval; a download still running when its link is revoked
// is cut, on whichever instance serves it, and records download.denied
// (revoked) with the bytes it had sent.
type auditedStream struct {
	http.ResponseWriter
	server      *Server
	request     *http.Request
	event       audit.Event
	view        store.LinkView
	wroteHeader bool
	inFlight    bool // counted in Server.inFlight until the handler returns
	refused     bool
	streaming   bool
	sent        int64
	lastCheck   time.Time
	// rc moves the write deadline; nil once the writer turned out not to
	// support deadlines.
	rc *http.ResponseController
}

// revokeCheckInterval is how often a running download looks for a revoke.
const revokeCheckInterval = time.Second

// errRevokedMidStream stops a download whose link was revoked.
var errRevokedMidStream = errors.New("download stopped: link revoked")

var errAuditRefused = errors.New("download stopped: audit event not recorded")

func (a *auditedStream) WriteHeader(code int) {
	if a.wroteHeader {
		a.ResponseWriter.WriteHeader(code) // let net/http report the misuse
		return
	}
	a.wroteHeader = true
	streaming := code == http.StatusOK || code == http.StatusPartialContent
	if streaming && a.request.Method == http.MethodGet {
		// Counted before download.ok and the re-read: every download
		// that can still send bytes after a revoke wrote the store was
		// counted before that write, so the revoke's count includes it.
		a.server.inFlight.add(a.view.Link.ID)
		a.inFlight = true
		if err := a.server.record(a.request, a.event); err != nil {
			a.refuse(pageUnavailable, time.Time{})
			return
		}
		if revokedAt, revoked := a.revoked(); revoked {
			denied := withLink(a.server.webEvent(a.request, audit.TypeDownloadDenied), a.view)
			denied.Reason = "revoked"
			denied.Detail = "revoked after download.ok was recorded; nothing sent"
			_ = a.server.record(a.request, denied)
			a.refuse(pageRevoked, revokedAt)
			return
		}
		// For the sender's manage page (and download notice); never
		// fails the download.
		a.server.recordAccess(a.request, a.view, store.AccessDownload, verifiedOf(a.event))
		a.streaming = true
		a.lastCheck = time.Now()
	}
	a.ResponseWriter.WriteHeader(code)
}

// refuse replaces the file's answer with an error page.
func (a *auditedStream) refuse(kind pageKind, at time.Time) {
	a.refused = true
	h := a.Header()
	for _, k := range []string{"Content-Length", "Content-Range", "Content-Disposition", "ETag", "Last-Modified", "Accept-Ranges", "Content-Type", "Content-Security-Policy"} {
		h.Del(k)
	}
	a.server.renderErrorAt(a.ResponseWriter, a.request, kind, at)
}

// revoked reads the link again. A store error counts as not revoked: the
// revocation check before the signed URL was issued passed, and an outage
// must not cut every running download.
func (a *auditedStream) revoked() (time.Time, bool) {
	ctx, cancel := storeContext(a.request)
	defer cancel()
	v, err := a.server.store.LinkByID(ctx, a.view.Link.ID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			a.server.log.Warn("linkserver: revocation re-check failed", "link_id", a.view.Link.ID, "err", err)
		}
		return time.Time{}, false
	}
	return v.Link.RevokedAt, !v.Link.RevokedAt.IsZero()
}

// beforeChunk extends the write deadline and, every revokeCheckInterval,
// cuts the download if its link was revoked meanwhile.
func (a *auditedStream) beforeChunk() error {
	if a.rc != nil {
		// Another StallTimeout for this chunk: a download has no overall
		// limit, a client that stops reading is cut.
		if err := a.rc.SetWriteDeadline(time.Now().Add(a.server.stallTimeout)); err != nil {
			a.rc = nil // a writer without deadlines (tests); nothing to extend
		}
	}
	if !a.streaming || time.Since(a.lastCheck) < revokeCheckInterval {
		return nil
	}
	a.lastCheck = time.Now()
	if _, revoked := a.revoked(); revoked {
		denied := withLink(a.server.webEvent(a.request, audit.TypeDownloadDenied), a.view)
		denied.Reason = "revoked"
		denied.Detail = "revoked during the download; cut after " + strconv.FormatInt(a.sent, 10) + " bytes"
		_ = a.server.record(a.request, denied)
		a.streaming = false
		return errRevokedMidStream
	}
	return nil
}

func (a *auditedStream) Write(p []byte) (int, error) {
	if !a.wroteHeader {
		a.WriteHeader(http.StatusOK)
	}
	if a.refused {
		return 0, errAuditRefused
	}
	// The copy buffer is 1 MiB, but each write deadline covers at most
	// stallChunk: a client that keeps reading at StallTimeout's pace for
	// 128 KiB is not cut because one write holds a whole MiB.
	written := 0
	for len(p) > 0 {
		if err := a.beforeChunk(); err != nil {
			return written, err
		}
		piece := p[:min(len(p), stallChunk)]
		n, err := a.ResponseWriter.Write(piece)
		a.sent += int64(n)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// stallChunk is the most a download writes under one StallTimeout
// deadline (README: "each 128 KiB chunk gets a fresh 60-second write
// deadline").
const stallChunk = 128 << 10

// ReadFrom is where http.ServeContent's copy lands: it moves the file in
// 1 MiB reads (16 age chunks) instead of io.Copy's 32 KiB. Each read
// decrypts 16 chunks in one call into age, which allocates a chunk per
// call; Write sends them in stallChunk pieces, each under its own
// StallTimeout deadline. (10 MiB downloads, 16 at once, went from 0.50 to
// 0.68 of nginx's rate with unsplit 1 MiB writes, bench/README.md.)
func (a *auditedStream) ReadFrom(r io.Reader) (int64, error) {
	if !a.wroteHeader {
		a.WriteHeader(http.StatusOK)
	}
	if a.refused {
		return 0, errAuditRefused
	}
	buf := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(buf)
	return io.CopyBuffer(writerOnly{a}, r, *buf)
}

// writerOnly hides ReadFrom, so io.CopyBuffer uses our 1 MiB buffer and
// every chunk goes through auditedStream.Write.
type writerOnly struct{ io.Writer }

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}

// Unwrap lets http.ResponseController reach the connection.
func (a *auditedStream) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// contentDisposition builds an RFC 6266 attachment header with both an
// ASCII filename for old clients and an RFC 8187 filename* with the real
// UTF-8 name. mime.FormatMediaType does not fit: it emits only filename*
// for non-ASCII names and backslash-escapes quotes in filename, which some
// browsers keep literally.
func contentDisposition(name string) string {
	if name == "" {
		name = "download"
	}
	return `attachment; filename="` + asciiFallbackName(name) + `"; filename*=UTF-8''` + encodeRFC8187(name)
}

// asciiFallbackName replaces every non-ASCII rune, control character, '"'
// and '\' with '_', so the quoted string needs no escapes.
func asciiFallbackName(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	for _, r := range name {
		if r < 0x20 || r >= 0x7f || r == '"' || r == '\\' {
			b.WriteByte('_')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// encodeRFC8187 percent-encodes every byte that is not an attr-char
// (RFC 8187, section 3.2.1).
func encodeRFC8187(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) * 3)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAttrChar(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0x0f])
	}
	return b.String()
}

func isAttrChar(c byte) bool {
	if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$&+-.^_`|~", c) >= 0
}

func isLowerHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// signedRecipient resolves the r parameter of a signed URL (already
// checked by verifyFileURL) to a recipient of m.
func signedRecipient(m store.Message, r string) (string, bool) {
	if r == "" {
		return "", false
	}
	i, err := strconv.Atoi(r)
	if err != nil || i < 0 || i >= len(m.Recipients) {
		return "", false
	}
	return m.Recipients[i], true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// verifiedOf is the verified recipient a download.ok names ("" when the
// message needs no verification).
func verifiedOf(e audit.Event) string {
	if len(e.Recipients) == 1 {
		return e.Recipients[0]
	}
	return ""
}
