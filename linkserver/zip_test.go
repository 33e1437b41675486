package linkserver

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/store"
)

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// downloadAll opens the message page with a fresh browser and presses
// Download all.
func (h *harness) downloadAll(token string, header http.Header) (*http.Response, []byte) {
	h.t.Helper()
	c := h.browser(false)
	resp, p := h.openMessage(c, token, header)
	if p.allAction == "" {
		h.t.Fatalf("no Download all on the page (status %d): %s", resp.StatusCode, p.body)
	}
	post := http.Header{
		"Content-Type":   {"application/x-www-form-urlencoded"},
		"Sec-Fetch-Site": {"same-origin"},
		"Origin":         {h.http.URL},
	}
	for k, v := range header {
		post[k] = v
	}
	return h.do(c, http.MethodPost, p.allAction, post, strings.NewReader(url.Values{csrfField: {p.csrf}}.Encode()))
}

// localHeaderFlags reads the general purpose flags of each local file
// header in a ZIP, by entry name (the central directory has its own copy,
// which archive/zip reports).
func localHeaderFlags(body []byte, names []string) map[string]uint16 {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]uint16{}
	for i := 0; ; {
		j := bytes.Index(body[i:], []byte("PK\x03\x04"))
		if j < 0 || i+j+30 > len(body) {
			return out
		}
		at := i + j
		nameLen := int(binary.LittleEndian.Uint16(body[at+26:]))
		if at+30+nameLen <= len(body) {
			if name := string(body[at+30 : at+30+nameLen]); want[name] {
				out[name] = binary.LittleEndian.Uint16(body[at+6:])
			}
		}
		i = at + 4
	}
}

// Download all: a ZIP of every usable file, byte for byte, with safe,
// unique UTF-8 names carrying the language flag, readable by Go's
// archive/zip and by Info-ZIP unzip; dead files are left out and named in
// README.txt; each included file counts one download and has its
// download.ok.
func TestMessageDownloadAll(t *testing.T) {
	h := newHarness(t)
	files := []msgFile{
		{name: "見積書 2026年度.pdf", content: randomBytes(1, 300_000)},
		{name: "report.txt", content: []byte("first report")},
		{name: "report.txt", content: []byte("second report")},
		{name: "REPORT.TXT", content: []byte("third report")},
		{name: "../../etc/evil.sh", content: []byte("#!/bin/sh\necho pwned\n")},
		{name: "/etc/passwd", content: []byte("absolute")},
		{name: `C:\Windows\x.bat`, content: []byte("drive")},
		{name: "a\r\nContent-Type: text/html.txt", content: []byte("header injection")},
		{name: "..", content: []byte("dot dot")},
		{name: "invoice\u202Efdp.exe", content: []byte("rtl override")},
		{name: "revoked.pdf", content: []byte("revoked")},
		{name: "expired.doc", content: []byte("expired"), expiresIn: time.Hour},
		{name: "used up.txt", content: []byte("limit"), maxDownloads: 1},
		{name: "empty.txt", content: []byte{}},
	}
	m := h.addPageMessage(store.Message{Lang: "ja"}, files...)
	ctx := context.Background()
	if err := h.store.RevokeLink(ctx, m.links[10].id, testStart.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.CountDownload(ctx, m.links[12].id, testStart); err != nil {
		t.Fatal(err)
	}
	h.clock.Set(testStart.Add(2 * time.Hour))

	resp, body := h.downloadAll(m.token, http.Header{"Accept-Language": {"en"}})
	mustStatus(t, resp, http.StatusOK)
	for k, want := range map[string]string{
		"Content-Type":           "application/zip",
		"Content-Disposition":    `attachment; filename="attachments-20260302.zip"; filename*=UTF-8''attachments-20260302.zip`,
		"X-Content-Type-Options": "nosniff",
		"Cache-Control":          "private, no-store",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}

	// Expected entries, in file order, then the note.
	wantNames := []string{
		"見積書 2026年度.pdf",
		"report.txt",
		"report (2).txt",
		"REPORT (3).TXT",
		".._.._etc_evil.sh",
		"_etc_passwd",
		"C__Windows_x.bat",
		"a__Content-Type_ text_html.txt",
		"file",
		"invoice_fdp.exe",
		"empty.txt",
		"README.txt",
	}
	wantContent := map[string][]byte{}
	for i, j := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13} {
		wantContent[wantNames[i]] = files[j].content
	}

	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatalf("archive/zip cannot read the ZIP: %v", err)
	}
	var gotNames []string
	var readme string
	for _, f := range zr.File {
		gotNames = append(gotNames, f.Name)
		wantTime := "2026-03-02 19:00" // created at testStart, in the server's zone
		if f.Name == "README.txt" {
			wantTime = "2026-03-02 21:00" // written now
		}
		if got := f.Modified.Format("2006-01-02 15:04"); got != wantTime {
			t.Errorf("%s: modified %s, want %s", f.Name, got, wantTime)
		}
		if f.Method != zip.Store {
			t.Errorf("%s: method %d, want stored", f.Name, f.Method)
		}
		nonASCII := strings.IndexFunc(f.Name, func(r rune) bool { return r > 0x7f }) >= 0
		if got := f.Flags&0x800 != 0; got != nonASCII || f.NonUTF8 {
			t.Errorf("%s: UTF-8 flag in the central directory %v, want %v", f.Name, got, nonASCII)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc) // checks the CRC-32 at the end
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if f.Name == "README.txt" {
			readme = string(got)
			continue
		}
		if want, ok := wantContent[f.Name]; !ok || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, not the original (%d bytes)", f.Name, len(got), len(want))
		}
	}
	if strings.Join(gotNames, "|") != strings.Join(wantNames, "|") {
		t.Errorf("entries\n got %q\nwant %q", gotNames, wantNames)
	}
	flags := localHeaderFlags(body, wantNames)
	if flags["見積書 2026年度.pdf"]&0x800 == 0 || flags["report.txt"]&0x800 != 0 || len(flags) != len(wantNames) {
		t.Errorf("local header flags %v: want bit 11 on the Japanese name only", flags)
	}
	for _, want := range []string{
		"- revoked.pdf: Withdrawn by the sender on ",
		"- expired.doc: Expired on ",
		"- used up.txt: Download limit reached",
	} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.txt lacks %q:\n%s", want, readme)
		}
	}

	// Counting: one download per included file, none for the others.
	for i, l := range m.links {
		want := 1
		switch i {
		case 10, 11:
			want = 0
		}
		if n := h.downloads(l.id); n != want {
			t.Errorf("%q: downloads %d, want %d", l.file.Name, n, want)
		}
	}
	ok := h.events.ofType(audit.TypeDownloadOK)
	if len(ok) != 11 {
		t.Errorf("download.ok events: %d, want 11", len(ok))
	}
	for _, e := range ok {
		if !strings.Contains(e.Detail, "ZIP") || e.MessageID != m.id {
			t.Errorf("download.ok %+v", e)
		}
	}
	left := 0
	for _, e := range h.events.ofType(audit.TypeDownloadDenied) {
		if e.Detail == "left out of a ZIP (Download all)" {
			left++
		}
	}
	if left != 3 {
		t.Errorf("download.denied for left-out files: %d, want 3", left)
	}

	checkWithUnzip(t, body, wantNames, wantContent)
}

// checkWithUnzip lists, tests and extracts the ZIP with Info-ZIP unzip
// (Debian's build) and compares every file.
func checkWithUnzip(t *testing.T, body []byte, wantNames []string, wantContent map[string][]byte) {
	t.Helper()
	unzip, err := exec.LookPath("unzip")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("unzip missing: make deps installs it")
		}
		t.Skip("unzip not installed (make deps installs it)")
	}
	dir := t.TempDir()
	zipPath := filepath.Join(dir, "all.zip")
	if err := os.WriteFile(zipPath, body, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		cmd := exec.Command(unzip, args...)
		// The plain C locale, the least a server has: Debian's unzip
		// (6.0-28) takes names flagged UTF-8 (bit 11) as UTF-8 and writes
		// them as such whatever the locale, so no -O/-I is needed; those
		// only name the charset of unflagged names.
		cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("unzip %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	listed := strings.Split(strings.TrimRight(run("-Z1", zipPath), "\n"), "\n")
	if strings.Join(listed, "|") != strings.Join(wantNames, "|") {
		t.Errorf("unzip -Z1 lists\n%q\nwant\n%q", listed, wantNames)
	}
	run("-t", zipPath)
	out := filepath.Join(dir, "out")
	run("-q", zipPath, "-d", out)
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		if !e.Type().IsRegular() {
			t.Errorf("unzip made %s, not a regular file", e.Name())
		}
		got = append(got, e.Name())
	}
	want := append([]string(nil), wantNames...)
	sort.Strings(want)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("unzip extracted\n%q\nwant\n%q", got, want)
	}
	for name, content := range wantContent {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || !bytes.Equal(b, content) {
			t.Errorf("unzip: %s differs from the original (%v)", name, err)
		}
	}
	// Nothing landed outside the extraction directory.
	if all, _ := os.ReadDir(dir); len(all) != 2 {
		t.Errorf("extraction wrote outside its directory: %v", all)
	}
}

// When no file is usable, Download all answers the message page with 410
// and counts nothing.
func TestMessageDownloadAllNoneUsable(t *testing.T) {
	h := newHarness(t)
	m := h.addPageMessage(store.Message{},
		msgFile{name: "a.txt", content: []byte("a")},
		msgFile{name: "b.txt", content: []byte("b"), expiresIn: time.Hour})
	c := h.browser(false)
	_, p := h.openMessage(c, m.token, nil)
	if err := h.store.RevokeLink(context.Background(), m.links[0].id, testStart); err != nil {
		t.Fatal(err)
	}
	h.clock.Set(testStart.Add(2 * time.Hour))
	resp, body := h.postMessage(c, p.allAction, url.Values{csrfField: {p.csrf}})
	mustStatus(t, resp, http.StatusGone)
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" || !strings.Contains(string(body), messageTexts["en"].NoneUsable) {
		t.Errorf("410 answer: %s %s", ct, body)
	}
	for _, l := range m.links {
		if n := h.downloads(l.id); n != 0 {
			t.Errorf("counted %d", n)
		}
	}
	if n := len(h.events.ofType(audit.TypeDownloadOK)); n != 0 {
		t.Errorf("download.ok: %d", n)
	}
	// The page itself says the same with 410 and no buttons.
	resp, p = h.openMessage(c, m.token, nil)
	mustStatus(t, resp, http.StatusGone)
	if p.allAction != "" || len(p.files) != 0 {
		t.Errorf("dead message page still has forms")
	}
}

// If the audit log refuses download.ok, no ZIP byte is sent.
func TestMessageDownloadAllAuditDown(t *testing.T) {
	h := newHarness(t)
	m := h.addPageMessage(store.Message{}, msgFile{name: "a.txt", content: []byte("secret bytes")})
	c := h.browser(false)
	_, p := h.openMessage(c, m.token, nil)
	h.events.fail(errAuditDown)
	resp, body := h.postMessage(c, p.allAction, url.Values{csrfField: {p.csrf}})
	mustStatus(t, resp, http.StatusServiceUnavailable)
	if bytes.Contains(body, []byte("secret bytes")) || resp.Header.Get("Content-Disposition") != "" {
		t.Errorf("ZIP sent without its audit event")
	}
}

// A link revoked while the ZIP streams cuts it: the client gets an error,
// not a ZIP it could take for whole, and download.denied says so.
func TestMessageDownloadAllRevokedMidStream(t *testing.T) {
	h := newHarness(t)
	// Far more than the socket buffers hold, so the server is still
	// writing when the revoke lands.
	big := randomBytes(7, 32<<20)
	m := h.addPageMessage(store.Message{}, msgFile{name: "big.bin", content: big})
	c := h.browser(false)
	_, p := h.openMessage(c, m.token, nil)
	req, err := http.NewRequest(http.MethodPost, h.http.URL+p.allAction, strings.NewReader(url.Values{csrfField: {p.csrf}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	mustStatus(t, resp, http.StatusOK)
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	if err := h.store.RevokeLink(context.Background(), m.links[0].id, testStart); err != nil {
		t.Fatal(err)
	}
	// Let the server's revocation check interval pass while it is blocked
	// on the full socket; its next write looks at the link again.
	time.Sleep(revokeCheckInterval + 200*time.Millisecond)
	n, readErr := io.Copy(io.Discard, resp.Body)
	if readErr == nil {
		t.Fatalf("ZIP not cut after the revoke: read %d more bytes to a clean end", n)
	}
	if n+64<<10 >= int64(len(big)) {
		t.Errorf("cut only after the whole file (%d bytes)", n)
	}
	deadline := time.Now().Add(30 * time.Second)
	var cut bool
	for time.Now().Before(deadline) && !cut {
		for _, e := range h.events.ofType(audit.TypeDownloadDenied) {
			cut = cut || (e.Reason == "revoked" && strings.Contains(e.Detail, "revoked during a ZIP download"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !cut {
		t.Error("no download.denied (revoked) for the cut ZIP")
	}
}

// Attack: entry names from mail are untrusted. None may leave the
// extraction directory, hide its extension, break a line or clash with
// another entry.
func TestSafeEntryNames(t *testing.T) {
	long := strings.Repeat("長", 100) + ".pdf" // 304 bytes
	tests := []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"見積書.pdf", "見積書.pdf"},
		{"../x", ".._x"},
		{"../../etc/passwd", ".._.._etc_passwd"},
		{"/etc/passwd", "_etc_passwd"},
		{`..\..\windows\system32\x.dll`, ".._.._windows_system32_x.dll"},
		{`C:\x.bat`, "C__x.bat"},
		{"\\\\server\\share\\x", "__server_share_x"},
		{".", "file"},
		{"..", "file"},
		{"...", "file"},
		{"", "file"},
		{"   ", "file"},
		{"name. . ", "name"},
		{".bashrc", ".bashrc"},
		{"a\r\nb.txt", "a__b.txt"},
		{"a\x00b.txt", "a_b.txt"},
		{"invoice\u202Efdp.exe", "invoice_fdp.exe"},
		{"x\u200b.txt", "x_.txt"},
		{"a\xffb.txt", "a_b.txt"},
		{`what?<>|*".txt`, "what______.txt"},
		{"CON", "_CON"},
		{" CON", "_CON"},
		{"CON .txt", "_CON .txt"},
		{"nul.txt", "_nul.txt"},
		{"COM1.log", "_COM1.log"},
		{"COM0.log", "COM0.log"},
		{"CONSOLE.txt", "CONSOLE.txt"},
		{long, strings.Repeat("長", 78) + ".pdf"},
	}
	for _, tt := range tests {
		got := safeEntryName(tt.in)
		if got != tt.want {
			t.Errorf("safeEntryName(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if len(got) > zipNameMaxBytes || !utf8ValidName(got) || strings.ContainsAny(got, "/\\") || got == "." || got == ".." {
			t.Errorf("safeEntryName(%q) = %q: unsafe", tt.in, got)
		}
	}

	names := &entryNames{used: map[string]bool{}}
	var got []string
	for _, n := range []string{"a.pdf", "a.pdf", "A.PDF", "a (2).pdf", "../a.pdf", "..", "", "noext", "noext", ".hidden", ".hidden"} {
		got = append(got, names.take(n))
	}
	want := []string{"a.pdf", "a (2).pdf", "A (3).PDF", "a (2) (2).pdf", ".._a.pdf", "file", "file (2)", "noext", "noext (2)", ".hidden", ".hidden (2)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("unique names\n got %q\nwant %q", got, want)
	}
}

func utf8ValidName(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// revokeOnDownloadOK is an audit recorder that revokes a link right after
// download.ok is recorded for it: the race between a ZIP and a revoke.
type revokeOnDownloadOK struct {
	*eventLog
	store  store.Store
	linkID string
}

func (r *revokeOnDownloadOK) Record(ctx context.Context, e audit.Event) error {
	if err := r.eventLog.Record(ctx, e); err != nil {
		return err
	}
	if e.Type == audit.TypeDownloadOK && e.LinkID == r.linkID {
		return r.store.RevokeLink(ctx, r.linkID, testStart)
	}
	return nil
}

// A file revoked after its download.ok was recorded but before the ZIP
// started is left out, named in README.txt, and its download.denied
// follows the download.ok; the other files still come.
func TestMessageDownloadAllRevokedBeforeBytes(t *testing.T) {
	var rec *revokeOnDownloadOK
	h := newHarness(t, func(o *Options) {
		rec = &revokeOnDownloadOK{eventLog: o.Audit.(*eventLog), store: o.Store}
		o.Audit = rec
	})
	m := h.addPageMessage(store.Message{},
		msgFile{name: "keep.txt", content: []byte("kept")},
		msgFile{name: "pulled.txt", content: []byte("pulled back")})
	rec.linkID = m.links[1].id
	resp, body := h.downloadAll(m.token, nil)
	mustStatus(t, resp, http.StatusOK)
	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		if f.Name == "README.txt" {
			rc, _ := f.Open()
			b, _ := io.ReadAll(rc)
			rc.Close()
			if !strings.Contains(string(b), "- pulled.txt: Withdrawn by the sender") {
				t.Errorf("README.txt: %s", b)
			}
		}
	}
	if strings.Join(names, "|") != "keep.txt|README.txt" {
		t.Errorf("entries %q", names)
	}
	if bytes.Contains(body, []byte("pulled back")) {
		t.Error("the revoked file's bytes were sent")
	}
	var seq []string
	for _, e := range h.events.all() {
		if e.LinkID == m.links[1].id && (e.Type == audit.TypeDownloadOK || e.Type == audit.TypeDownloadDenied) {
			seq = append(seq, string(e.Type)+"/"+e.Reason)
		}
	}
	if strings.Join(seq, " ") != "download.ok/ download.denied/revoked" {
		t.Errorf("events of the revoked file: %v", seq)
	}
}

// FuzzSafeEntryName: whatever name a mail carries, the entry name is
// valid UTF-8, one path element that is neither "." nor "..", without
// separators, drive colons, control or format characters, trailing dots
// or spaces, at most zipNameMaxBytes long; and unique names stay unique
// case-insensitively.
func FuzzSafeEntryName(f *testing.F) {
	for _, s := range []string{"../x", "/etc/passwd", `C:\x`, "..", "見積書.pdf", "a\u202Eb", "CON.txt", strings.Repeat("長", 100) + ".pdf", "a\xff"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, in := range []string{a, b} {
			got := safeEntryName(in)
			if got == "" || got == "." || got == ".." || len(got) > zipNameMaxBytes || !utf8ValidName(got) ||
				strings.ContainsAny(got, "/\\:\r\n\x00") || strings.HasSuffix(got, ".") || strings.HasSuffix(got, " ") ||
				strings.HasPrefix(got, " ") || reservedWindowsName(got) {
				t.Fatalf("safeEntryName(%q) = %q", in, got)
			}
			for _, r := range got {
				if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
					t.Fatalf("safeEntryName(%q) = %q keeps %U", in, got, r)
				}
			}
		}
		names := &entryNames{used: map[string]bool{}}
		x, y, z := names.take(a), names.take(b), names.take(a)
		if strings.EqualFold(x, y) || strings.EqualFold(x, z) || strings.EqualFold(y, z) {
			t.Fatalf("names not unique: %q %q %q", x, y, z)
		}
	})
}

// 20 browsers press Download all at once on a message whose first file
// allows 3 downloads: exactly 3 ZIPs hold it, the others name it in
// README.txt, and the counter stops at 3.
func TestMessageDownloadAllConcurrentLimit(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.DenialLimit = 1000 })
	m := h.addPageMessage(store.Message{},
		msgFile{name: "limited.txt", content: []byte("only three"), maxDownloads: 3},
		msgFile{name: "open.txt", content: []byte("for everyone")})
	type result struct {
		status  int
		entries string
	}
	results := make(chan result, 20)
	for range 20 {
		c := h.browser(false)
		_, p := h.openMessage(c, m.token, nil)
		go func() {
			req, err := http.NewRequest(http.MethodPost, h.http.URL+p.allAction, strings.NewReader(url.Values{csrfField: {p.csrf}}.Encode()))
			if err != nil {
				results <- result{}
				return
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := c.Do(req)
			if err != nil {
				results <- result{}
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var names []string
			if zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body))); err == nil {
				for _, f := range zr.File {
					names = append(names, f.Name)
				}
			}
			results <- result{resp.StatusCode, strings.Join(names, "|")}
		}()
	}
	with := 0
	for range 20 {
		r := <-results
		switch r.entries {
		case "limited.txt|open.txt":
			with++
		case "open.txt|README.txt":
		default:
			t.Errorf("answer %d with entries %q", r.status, r.entries)
		}
	}
	if with != 3 || h.downloads(m.links[0].id) != 3 || h.downloads(m.links[1].id) != 20 {
		t.Errorf("ZIPs with the limited file: %d; downloads %d and %d", with, h.downloads(m.links[0].id), h.downloads(m.links[1].id))
	}
}

// Over https the /m/ cookie is Secure, HttpOnly, SameSite=Strict and
// scoped to /m/.
func TestMessageCookieOverHTTPS(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.HTTPS = true })
	m := h.addPageMessage(store.Message{}, msgFile{name: "a.txt", content: []byte("a")})
	resp, _ := h.do(http.DefaultClient, http.MethodGet, "/m/"+m.token, nil, nil)
	mustStatus(t, resp, http.StatusOK)
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies %v", cookies)
	}
	ck := cookies[0]
	if ck.Name != csrfCookie || ck.Path != "/m/" || !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie %+v", ck)
	}
}

// A browser that hangs up mid-ZIP ends the download on the server: the
// in-flight count a revoke reports drops back to zero and the blob is
// closed; nothing is logged as an error.
func TestMessageDownloadAllClientHangsUp(t *testing.T) {
	h := newHarness(t)
	m := h.addPageMessage(store.Message{}, msgFile{name: "big.bin", content: randomBytes(9, 32<<20)})
	c := h.browser(false)
	_, p := h.openMessage(c, m.token, nil)
	req, err := http.NewRequest(http.MethodPost, h.http.URL+p.allAction, strings.NewReader(url.Values{csrfField: {p.csrf}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	mustStatus(t, resp, http.StatusOK)
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	if n := h.server.DownloadsInFlight(m.links[0].id); n != 1 {
		t.Errorf("in flight while streaming: %d, want 1", n)
	}
	resp.Body.Close()
	c.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for h.server.DownloadsInFlight(m.links[0].id) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the ZIP download is still in flight after the client hung up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Contains(h.logs.String(), `"level":"ERROR"`) {
		t.Errorf("a hang-up logged an error: %s", h.logs.String())
	}
}
