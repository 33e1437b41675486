package main

// Every page of the link server in a real browser: headless Chromium
// (Debian's chromium, installed by `make deps`) driven over the DevTools
// protocol with chromedp, against the real daemon with a real link from a
// relayed mail. Each page is opened in English and in Japanese and checked
// the way a recipient meets it: the right status and heading, no console
// errors, no request to another origin, no horizontal scrolling on a
// 390 px phone, a label on every button and field, and for the landing page
// a click on Download that leaves the file, byte for byte and under its
// Japanese name, in the browser's download directory. A screenshot of each
// page (desktop and phone) goes to $TEST_OUTPUT/browser, or to the test's
// artifact directory (go test -artifacts -outputdir DIR keeps them).
//
// A new page is one row in browserPages.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/attachgate/attachgate/smtptest"
)

// browserEnv is the daemon the pages come from, with the links the rows
// need.
type browserEnv struct {
	linkURL     string // origin of the link server
	landing     string // a live link
	revoked     string // a revoked link
	fileName    string // the landing link's file
	fileContent []byte
}

// browserPage is one page to visit.
type browserPage struct {
	name   string // screenshot file names start with it
	url    func(e *browserEnv) string
	status int
	// heading is the <h1> text per language.
	heading map[string]string
	// download: press the page's button and expect the landing link's file.
	download bool
}

var browserPages = []browserPage{
	{name: "landing", url: func(e *browserEnv) string { return e.landing }, status: 200,
		heading: map[string]string{"en": "File download", "ja": "ファイルのダウンロード"}, download: true},
	{name: "not-found", url: func(e *browserEnv) string { return e.linkURL + "/d/" + strings.Repeat("A", 43) }, status: 404,
		heading: map[string]string{"en": "Link not found", "ja": "リンクが見つかりません"}},
	{name: "unknown-path", url: func(e *browserEnv) string { return e.linkURL + "/nothing/here" }, status: 404,
		heading: map[string]string{"en": "Link not found", "ja": "リンクが見つかりません"}},
	{name: "revoked", url: func(e *browserEnv) string { return e.revoked }, status: 410,
		heading: map[string]string{"en": "Link withdrawn", "ja": "リンクは取り消されました"}},
}

// browserLanguages are the Accept-Language headers the pages are read in.
var browserLanguages = []struct{ lang, accept string }{
	{"en", "en-US,en;q=0.9"},
	{"ja", "ja-JP,ja;q=0.9"},
}

// phoneWidth is the CSS width of a common phone (iPhone 12 to 15).
const phoneWidth = 390

func TestPagesInBrowser(t *testing.T) {
	chromium := findChromium(t)
	env := newBrowserEnv(t)
	outDir := screenshotDir(t)

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	defer cancelAlloc()
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}

	for _, page := range browserPages {
		for _, l := range browserLanguages {
			t.Run(page.name+"/"+l.lang, func(t *testing.T) {
				visitPage(t, browserCtx, env, page, l.lang, l.accept, outDir)
			})
		}
	}
}

// pageRecord is what the tab reported while a page was open.
type pageRecord struct {
	mu       sync.Mutex
	requests []string
	problems []string // console errors, exceptions, error log entries
}

func (r *pageRecord) listen(ev any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		r.requests = append(r.requests, ev.Request.URL)
	case *runtime.EventExceptionThrown:
		r.problems = append(r.problems, "exception: "+ev.ExceptionDetails.Text)
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			r.problems = append(r.problems, fmt.Sprintf("console.%s", ev.Type))
		}
	case *cdplog.EventEntryAdded:
		if ev.Entry.Level == cdplog.EntryLevelError {
			r.problems = append(r.problems, fmt.Sprintf("log %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	}
}

func (r *pageRecord) snapshot() (requests, problems []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.requests...), append([]string(nil), r.problems...)
}

func visitPage(t *testing.T, browserCtx context.Context, env *browserEnv, page browserPage, lang, accept, outDir string) {
	rec := &pageRecord{}
	ctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithListener(rec.listen))
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelTimeout()

	pageURL := page.url(env)
	if err := chromedp.Do(ctx,
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders,
				network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Accept-Language": accept}})
			return err
		}),
		chromedp.EmulateViewport(1280, 900),
	); err != nil {
		t.Fatal(err)
	}
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(pageURL))
	if err != nil {
		t.Fatalf("open %s: %v", pageURL, err)
	}
	if resp.Status != int64(page.status) {
		t.Errorf("status = %d, want %d", resp.Status, page.status)
	}
	htmlLang, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.lang`))
	if err != nil || htmlLang != lang {
		t.Errorf("<html lang> = %q (%v), want %q", htmlLang, err, lang)
	}
	h1, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1")))
	if err != nil || strings.TrimSpace(h1) != page.heading[lang] {
		t.Errorf("<h1> = %q (%v), want %q", h1, err, page.heading[lang])
	}
	checkLabels(t, ctx)
	saveScreenshot(t, ctx, filepath.Join(outDir, page.name+"-"+lang+".png"))

	// A phone: the page must fit its width.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(phoneWidth, 844, chromedp.EmulateScale(3),
		func(p *emulation.SetDeviceMetricsOverrideParams, _ *emulation.SetTouchEmulationEnabledParams) {
			p.Mobile = true
		})); err != nil {
		t.Fatal(err)
	}
	widths, err := chromedp.Run(ctx, chromedp.Evaluate[[]float64](
		`[document.documentElement.scrollWidth, document.documentElement.clientWidth, window.innerWidth]`))
	if err != nil {
		t.Fatal(err)
	}
	// A page wider than the phone either scrolls sideways or, as a
	// mobile browser does, widens the layout viewport and shows it zoomed
	// out; both fail.
	if widths[0] > phoneWidth || widths[0] > widths[1] || widths[2] != phoneWidth {
		t.Errorf("on a %d px phone the page is %v px wide (viewport %v px): it does not fit", phoneWidth, widths[0], widths[2])
	}
	saveScreenshot(t, ctx, filepath.Join(outDir, page.name+"-"+lang+"-phone.png"))

	if page.download {
		downloadInBrowser(t, ctx, env)
	}

	requests, problems := rec.snapshot()
	origin := env.linkURL + "/"
	for _, u := range requests {
		if !strings.HasPrefix(u, origin) {
			t.Errorf("the page requested %s, outside its origin %s", u, env.linkURL)
		}
	}
	if len(requests) == 0 {
		t.Error("no request seen: the network listener is not working")
	}
	for _, p := range problems {
		// The browser logs a document's own error status; that is the
		// page doing its job, not a fault of it.
		if page.status >= 400 && strings.Contains(p, fmt.Sprintf("status of %d", page.status)) && strings.Contains(p, "("+pageURL+")") {
			continue
		}
		t.Errorf("console: %s", p)
	}
}

// checkLabels asks Chromium's accessibility tree for every button and form
// field: each needs an accessible name (its text, a <label>, aria-label).
func checkLabels(t *testing.T, ctx context.Context) {
	t.Helper()
	tree, err := chromedp.Call(ctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
	if err != nil {
		t.Fatalf("accessibility tree: %v", err)
	}
	controls := map[string]bool{"button": true, "textbox": true, "searchbox": true, "checkbox": true,
		"radio": true, "combobox": true, "listbox": true, "spinbutton": true, "slider": true, "switch": true}
	seen := 0
	for _, n := range tree.Nodes {
		if n.Ignored || n.Role == nil {
			continue
		}
		var role, name string
		_ = json.Unmarshal(n.Role.Value, &role)
		if !controls[role] {
			continue
		}
		seen++
		if n.Name != nil {
			_ = json.Unmarshal(n.Name.Value, &name)
		}
		if strings.TrimSpace(name) == "" {
			t.Errorf("a %s has no accessible name (label)", role)
		}
	}
	if domCount, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('button, input:not([type=hidden]), select, textarea').length`)); domCount != seen {
		t.Errorf("the accessibility tree shows %d controls, the DOM has %d", seen, domCount)
	}
}

// downloadInBrowser presses the landing page's button and waits for the
// browser to finish saving the file in a fresh download directory.
func downloadInBrowser(t *testing.T, ctx context.Context, env *browserEnv) {
	t.Helper()
	dir := t.TempDir()
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir, EventsEnabled: new(true),
	}); err != nil {
		t.Fatalf("set download directory: %v", err)
	}
	progress := chromedp.BrowserEvents(ctx, browser.DownloadProgress)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`form[method="post"] button`))); err != nil {
		t.Fatalf("click Download: %v", err)
	}
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("waiting for the download: %v", err)
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatal("the browser canceled the download")
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			break
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != env.fileName {
		t.Fatalf("download directory holds %q, want exactly %q", names, env.fileName)
	}
	got, err := os.ReadFile(filepath.Join(dir, env.fileName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, env.fileContent) {
		t.Fatalf("downloaded %d bytes that differ from the %d sent", len(got), len(env.fileContent))
	}
}

func saveScreenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// screenshotDir is $TEST_OUTPUT/browser when TEST_OUTPUT is set, else the
// test's artifact directory.
func screenshotDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("TEST_OUTPUT")
	if base == "" {
		return t.ArtifactDir()
	}
	dir := filepath.Join(base, "browser")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// findChromium returns Debian's chromium. Without it the test fails (make
// deps installs it); ATTACHGATE_SKIP_BROWSER=1 skips it on a machine that
// cannot have one.
func findChromium(t *testing.T) string {
	t.Helper()
	if os.Getenv("ATTACHGATE_SKIP_BROWSER") == "1" {
		t.Skip("ATTACHGATE_SKIP_BROWSER=1")
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: run `make deps` (Debian package chromium), or set ATTACHGATE_SKIP_BROWSER=1")
	return ""
}

// newBrowserEnv runs the daemon, relays a mail with a Japanese-named file
// and one more whose link an admin revokes.
func newBrowserEnv(t *testing.T) *browserEnv {
	t.Helper()
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	adminAddr := freeAddr(t)
	token := rand.Text()
	sum := sha256.Sum256([]byte(token))
	d := startDaemon(t, hop.Addr, fmt.Sprintf(`admin:
  listen: %q
  tokens:
    - name: browser-test
      sha256: %q
      role: admin
      networks: ["127.0.0.0/8"]
`, adminAddr, hex.EncodeToString(sum[:])))

	env := &browserEnv{linkURL: d.linkURL, fileName: "見積書 2026年12月.pdf", fileContent: make([]byte, 300<<10)}
	rand.Read(env.fileContent)
	if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment(env.fileName, env.fileContent)); err != nil {
		t.Fatal(err)
	}
	if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("revoked.pdf", []byte("gone"))); err != nil {
		t.Fatal(err)
	}
	msgs := hop.Messages()
	if len(msgs) != 2 {
		t.Fatalf("next hop got %d messages, want 2", len(msgs))
	}
	env.landing = relayedLinks(t, d, msgs[0].Data)[0]
	env.revoked = relayedLinks(t, d, msgs[1].Data)[0]

	var linkID string
	for _, ev := range exportEvents(t, d) {
		if ev["type"] == "link.created" && ev["file_name"] == "revoked.pdf" {
			linkID = fmt.Sprint(ev["link_id"])
		}
	}
	if linkID == "" {
		t.Fatal("no link.created event for revoked.pdf")
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+adminAddr+"/admin/links/"+url.PathEscape(linkID)+"/revoke", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %s", resp.Status)
	}
	return env
}
