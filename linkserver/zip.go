package linkserver

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

// Download all: one POST streams every usable file of a message as one
// ZIP, built on the fly with archive/zip. Entries are stored (no
// compression: attachments are mostly compressed already, and a stored
// entry costs no CPU), named in UTF-8 with the language flag (bit 11,
// which archive/zip sets for every non-ASCII name), ZIP64 past 4 GiB
// (archive/zip writes the 64-bit data descriptor and central directory
// records as needed). Nothing touches the disk: each blob is decrypted
// chunk by chunk from the vault straight into its entry, so memory stays
// bounded by one copy buffer, whatever the sizes.
//
// Counting: each file included counts one download on its link, as a
// per-file download would; files that are expired, withdrawn or at their
// limit are left out and named in a README.txt entry. download.ok is
// recorded for every included file before any byte is sent, and a link
// revoked while the ZIP streams cuts it, as on /f/.

// zipNameMaxBytes bounds one entry name before " (N)" is added to a
// duplicate; file systems allow 255 bytes.
const zipNameMaxBytes = 240

// zipEntry is one file of a Download all.
type zipEntry struct {
	view store.LinkView
	blob *vault.Blob
}

// leftOut is a file the ZIP does not hold, and why.
type leftOut struct {
	name   string
	reason string
}

// handleMessageZip is Download all.
func (s *Server) handleMessageZip(w http.ResponseWriter, r *http.Request) {
	now := s.now()
	mv, recipient, ok := s.messagePost(w, r, now)
	if !ok {
		return
	}
	t := messageCatalog(r, mv.Message.Lang)
	mt := textsFor(t)
	var (
		included []store.LinkView
		missing  []leftOut
	)
	leaveOut := func(v store.LinkView, state error, detail string) {
		missing = append(missing, leftOut{name: v.File.Name, reason: stateText(t, mt, v, state, s.location)})
		denied := s.linkEvent(r, audit.TypeDownloadDenied, v, recipient)
		_, denied.Reason = denial(state)
		if denied.Reason == "" {
			denied.Reason = "gone"
		}
		denied.Detail = detail
		_ = s.record(r, denied) // logged; the others still download
	}
	const leftOutDetail = "left out of a ZIP (Download all)"
	for _, v := range mv.Links {
		if state := linkState(v, now); state != nil {
			leaveOut(v, state, leftOutDetail)
			continue
		}
		counted, err := s.countDownload(r, v.Link.ID, now)
		if err != nil {
			if _, reason := denial(err); reason != "" {
				leaveOut(v, err, leftOutDetail)
				continue
			}
			s.storeFailed(w, r, "count download", v.Link.ID, err)
			return
		}
		v.Link = counted
		included = append(included, v)
	}

	var entries []*zipEntry
	defer func() {
		for _, e := range entries {
			_ = e.blob.Close()
		}
	}()
	for _, v := range included {
		blob, err := s.blobs.Open(v.File.ID, v.File.KeyID)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			s.log.Warn("linkserver: blob missing for live link", "link_id", v.Link.ID, "file_id", v.File.ID, "err", err)
			leaveOut(v, errFileGone, "left out of a ZIP (Download all): blob missing")
			continue
		case err != nil:
			s.log.Error("linkserver: open blob", "link_id", v.Link.ID, "file_id", v.File.ID, "key_id", v.File.KeyID, "err", err)
			s.renderError(w, r, pageInternal)
			return
		case blob.Size() != v.File.Size:
			s.log.Error("linkserver: blob size differs from metadata",
				"link_id", v.Link.ID, "file_id", v.File.ID, "blob_size", blob.Size(), "file_size", v.File.Size)
			_ = blob.Close()
			s.renderError(w, r, pageInternal)
			return
		}
		entries = append(entries, &zipEntry{view: v, blob: blob})
	}
	if len(entries) == 0 {
		s.setMessageCSRFCookie(w, r)
		s.renderMessage(w, r, mv, r.PathValue("token"), now, mt.NoneUsable)
		return
	}

	// download.ok for every file before any byte flows; no audit, no ZIP.
	events := make([]audit.Event, 0, len(entries))
	for _, e := range entries {
		s.inFlight.add(e.view.Link.ID)
		defer s.inFlight.done(e.view.Link.ID)
		ok := s.linkEvent(r, audit.TypeDownloadOK, e.view, recipient)
		ok.Detail = fmt.Sprintf("part of a ZIP (Download all) of %d files", len(entries))
		events = append(events, ok)
	}
	if err := s.recordAll(r, events); err != nil {
		s.renderError(w, r, pageUnavailable)
		return
	}
	// A revoke that wrote the store before those events were recorded is
	// honoured now, before anything is sent (see auditedStream).
	kept := entries[:0]
	var lastRevoke time.Time
	for _, e := range entries {
		if at, revoked := s.linkRevoked(r, e.view.Link.ID); revoked {
			e.view.Link.RevokedAt, lastRevoke = at, at
			leaveOut(e.view, store.ErrRevoked, "revoked after download.ok was recorded; left out of the ZIP")
			_ = e.blob.Close()
			continue
		}
		kept = append(kept, e)
	}
	entries = kept
	if len(entries) == 0 {
		s.renderErrorAt(w, r, pageRevoked, lastRevoke)
		return
	}

	h := w.Header()
	h.Set("Content-Type", "application/zip")
	h.Set("Content-Disposition", contentDisposition(zipFileName(now.In(s.location))))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "private, no-store")
	h.Set("Content-Security-Policy", fileCSP)
	h.Set("Referrer-Policy", "no-referrer")
	// The form was read by ParseForm: the ZIP may outlive ReadTimeout.
	clearReadDeadline(w)
	w.WriteHeader(http.StatusOK)

	sink := &zipSink{server: s, request: r, w: w, rc: http.NewResponseController(w), recipient: recipient}
	zw := zip.NewWriter(sink)
	names := &entryNames{used: map[string]bool{}}
	for i, e := range entries {
		if i > 0 {
			// A file revoked while earlier ones streamed is left out.
			if at, revoked := s.linkRevoked(r, e.view.Link.ID); revoked {
				e.view.Link.RevokedAt = at
				leaveOut(e.view, store.ErrRevoked, "revoked before its turn in the ZIP; left out")
				continue
			}
		}
		fw, err := zw.CreateHeader(entryHeader(names.take(e.view.File.Name), e.view.File.CreatedAt.In(s.location)))
		if err != nil {
			s.abortZip(r, "zip entry header", e.view, err)
		}
		sink.start(e.view)
		if _, err := io.Copy(fw, e.blob); err != nil {
			s.abortZip(r, "zip entry", e.view, err)
		}
		sink.start(store.LinkView{})
	}
	if len(missing) > 0 {
		fw, err := zw.CreateHeader(entryHeader(names.take(mt.readmeName), now.In(s.location)))
		if err == nil {
			_, err = io.WriteString(fw, zipReadme(mt, missing))
		}
		if err != nil {
			s.abortZip(r, "zip readme", store.LinkView{}, err)
		}
	}
	if err := zw.Close(); err != nil {
		s.abortZip(r, "zip central directory", store.LinkView{}, err)
	}
}

// entryHeader is the header of one stored entry. The mode makes the
// creator Unix (extracted files get rw-r--r--). The time goes only into
// the MS-DOS fields, in the link server's zone: with an extended
// timestamp extra field (what FileHeader.Modified adds), Debian's unzip
// escapes UTF-8 names as #Uxxxx in a non-UTF-8 locale.
func entryHeader(name string, modified time.Time) *zip.FileHeader {
	fh := &zip.FileHeader{Name: name, Method: zip.Store}
	//lint:ignore SA1019 the MS-DOS fields alone are what keeps the names readable (above)
	fh.ModifiedDate, fh.ModifiedTime = msDosTime(modified)
	fh.SetMode(0o644)
	return fh
}

// msDosTime encodes t's wall clock as MS-DOS date and time (2-second
// steps, 1980 to 2107).
func msDosTime(t time.Time) (date, clock uint16) {
	year := min(max(t.Year(), 1980), 2107)
	date = uint16(t.Day() + int(t.Month())<<5 + (year-1980)<<9)
	clock = uint16(t.Second()/2 + t.Minute()<<5 + t.Hour()<<11)
	return date, clock
}

// errFileGone is the state of a live link whose blob is missing.
var errFileGone = errors.New("file no longer stored")

// abortZip cuts a ZIP whose headers are sent: the connection is closed
// without the end of the chunked body, so no client takes the truncated
// ZIP for a whole one.
func (s *Server) abortZip(r *http.Request, step string, v store.LinkView, err error) {
	level := s.log.Warn
	if r.Context().Err() != nil || errors.Is(err, errRevokedMidStream) {
		level = s.log.Debug // client gone, or recorded as download.denied
	}
	level("linkserver: ZIP download cut", "step", step, "link_id", v.Link.ID, "file_id", v.File.ID, "err", err)
	panic(http.ErrAbortHandler)
}

// linkRevoked reads the link again; a store error counts as not revoked,
// as in auditedStream.revoked.
func (s *Server) linkRevoked(r *http.Request, linkID string) (time.Time, bool) {
	ctx, cancel := storeContext(r)
	defer cancel()
	v, err := s.store.LinkByID(ctx, linkID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Warn("linkserver: revocation re-check failed", "link_id", linkID, "err", err)
		}
		return time.Time{}, false
	}
	return v.Link.RevokedAt, !v.Link.RevokedAt.IsZero()
}

// zipSink is the response under the ZIP writer: every write gets a fresh
// StallTimeout deadline, and every revokeCheckInterval the link of the
// entry being written is read again; a revoke cuts the ZIP.
type zipSink struct {
	server    *Server
	request   *http.Request
	w         http.ResponseWriter
	rc        *http.ResponseController // nil once deadlines turned out unsupported
	recipient string
	current   store.LinkView // the entry being written; zero between entries
	sent      int64          // bytes of the current entry's part of the ZIP
	lastCheck time.Time
}

func (z *zipSink) start(v store.LinkView) {
	z.current = v
	z.sent = 0
	z.lastCheck = time.Now()
}

func (z *zipSink) Write(p []byte) (int, error) {
	if z.rc != nil {
		if err := z.rc.SetWriteDeadline(time.Now().Add(z.server.stallTimeout)); err != nil {
			z.rc = nil
		}
	}
	if z.current.Link.ID != "" && time.Since(z.lastCheck) >= revokeCheckInterval {
		z.lastCheck = time.Now()
		if _, revoked := z.server.linkRevoked(z.request, z.current.Link.ID); revoked {
			denied := z.server.linkEvent(z.request, audit.TypeDownloadDenied, z.current, z.recipient)
			denied.Reason = "revoked"
			denied.Detail = "revoked during a ZIP download (Download all); cut after " + strconv.FormatInt(z.sent, 10) + " bytes of this file"
			_ = z.server.record(z.request, denied)
			return 0, errRevokedMidStream
		}
	}
	n, err := z.w.Write(p)
	z.sent += int64(n)
	return n, err
}

// zipFileName is the name the browser saves Download all under.
func zipFileName(now time.Time) string {
	return "attachments-" + now.Format("20060102") + ".zip"
}

// zipReadme is the note listing the files left out.
func zipReadme(mt *messageText, missing []leftOut) string {
	var b strings.Builder
	b.WriteString(mt.readmeIntro)
	b.WriteString("\r\n\r\n")
	for _, m := range missing {
		b.WriteString("- ")
		b.WriteString(oneLine(m.name))
		b.WriteString(": ")
		b.WriteString(m.reason)
		b.WriteString("\r\n")
	}
	return b.String()
}

// oneLine keeps a file name on its line of the README.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '_'
		}
		return r
	}, strings.ToValidUTF8(s, "_"))
}

// entryNames hands out safe, unique entry names.
type entryNames struct {
	used map[string]bool // case-folded names taken
}

// take returns a safe version of name that no earlier entry has, even
// on a case-insensitive file system: "a.pdf", "a (2).pdf", "a (3).pdf".
func (n *entryNames) take(name string) string {
	base := safeEntryName(name)
	candidate := base
	for i := 2; n.used[strings.ToLower(candidate)]; i++ {
		candidate = numbered(base, i)
	}
	n.used[strings.ToLower(candidate)] = true
	return candidate
}

// numbered inserts " (i)" before the extension.
func numbered(name string, i int) string {
	stem, ext := name, ""
	if dot := strings.LastIndexByte(name, '.'); dot > 0 {
		stem, ext = name[:dot], name[dot:]
	}
	return stem + " (" + strconv.Itoa(i) + ")" + ext
}

// safeEntryName makes a file name from a mail safe as a ZIP entry name on
// every unzipper and file system: one path element, never "." or "..",
// nothing absolute (no '/', '\' or drive letter: each becomes '_'), no
// control or invisible format characters (a right-to-left override
// could disguise an extension), no characters Windows refuses, no
// trailing dots or spaces, no reserved device names, valid UTF-8, at
// most zipNameMaxBytes bytes with its extension kept.
func safeEntryName(name string) string {
	name = strings.ToValidUTF8(name, "_")
	name = strings.Map(func(r rune) rune {
		switch {
		case r < 0x20 || r == 0x7f || unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			return '_'
		case strings.ContainsRune(`/\:*?"<>|`, r):
			return '_'
		}
		return r
	}, name)
	name = strings.TrimLeft(name, " ")
	if reservedWindowsName(name) {
		name = "_" + name
	}
	if len(name) > zipNameMaxBytes {
		ext := ""
		if dot := strings.LastIndexByte(name, '.'); dot > 0 && len(name)-dot <= 16 {
			ext = name[dot:]
		}
		stem := name[:zipNameMaxBytes-len(ext)]
		for !utf8.ValidString(stem) {
			stem = stem[:len(stem)-1]
		}
		name = stem + ext
	}
	// Trimmed last, so a cut cannot leave a trailing space or dot.
	name = strings.TrimLeft(name, " ")
	name = strings.TrimRight(name, " .")
	if strings.Trim(name, ".") == "" {
		name = "file"
	}
	return name
}

// reservedWindowsName reports CON, PRN, AUX, NUL, COM1-9 and LPT1-9, with
// or without an extension, which Windows cannot create as files.
func reservedWindowsName(name string) bool {
	stem := name
	if dot := strings.IndexByte(name, '.'); dot >= 0 {
		stem = name[:dot]
	}
	stem = strings.ToUpper(strings.TrimRight(stem, " "))
	switch stem {
	case "CON", "PRN", "AUX", "NUL":
		return true
	}
	return len(stem) == 4 && (strings.HasPrefix(stem, "COM") || strings.HasPrefix(stem, "LPT")) &&
		stem[3] >= '1' && stem[3] <= '9'
}
