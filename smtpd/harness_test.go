package smtpd

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/linkserver"
	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/testsupport"
	"github.com/attachgate/attachgate/users"
	"github.com/attachgate/attachgate/vault"
)

// gateway is a whole attachgate in one test: real SMTP listener, real
// vault, SQLite store and audit log in a temp dir, real link server.
type gateway struct {
	t        testing.TB
	smtpAddr string
	tlsAddr  string // implicit TLS listener, when TLS is configured
	linkURL  string
	dir      string
	store    *store.SQLite
	audit    *audit.SQLiteLog
	server   *Server
}

type gatewayOption func(*Options, *pipeline.Pipeline)

func withTrusted(prefixes ...string) gatewayOption {
	return func(o *Options, _ *pipeline.Pipeline) {
		o.Trusted = nil
		for _, p := range prefixes {
			o.Trusted = append(o.Trusted, netip.MustParsePrefix(p))
		}
	}
}

func withMaxMessageBytes(n int64) gatewayOption {
	return func(o *Options, _ *pipeline.Pipeline) { o.MaxMessageBytes = n }
}

func withHopTimeout(d time.Duration) gatewayOption {
	return func(o *Options, _ *pipeline.Pipeline) { o.Hop.(*relay.SMTPHop).Timeout = d }
}

func withTLS(cfg *tls.Config) gatewayOption {
	return func(o *Options, _ *pipeline.Pipeline) { o.TLSConfig = cfg }
}

func withUsers(db *users.DB, allowLogin bool) gatewayOption {
	return func(o *Options, _ *pipeline.Pipeline) { o.Users, o.AllowLogin = db, allowLogin }
}

func withOptions(f func(*Options)) gatewayOption {
	return func(o *Options, _ *pipeline.Pipeline) { f(o) }
}

func startGateway(t testing.TB, hopAddr string, opts ...gatewayOption) *gateway {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ring, err := vault.OpenKeyRing(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := vault.NewBlobStore(filepath.Join(dir, "blobs"), ring)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenSQLite(filepath.Join(dir, "attachgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	al, err := audit.NewSQLite(st.DB(), audit.Options{Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}

	links, err := linkserver.New(linkserver.Options{Store: st, Blobs: blobs, MACKey: ring.MACKey(),
		Audit: al, Logger: log, Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(links.Handler())
	hs.Listener.Close()
	hs.Listener, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs.Start()
	t.Cleanup(hs.Close)

	p := &pipeline.Pipeline{Hostname: "gw.test", SpoolDir: filepath.Join(dir, "spool"), Store: st, Blobs: blobs,
		Audit: al, BaseURL: hs.URL, Expiry: time.Hour, Language: "both", Location: time.UTC, Logger: log}
	o := Options{Hostname: "gw.test", MaxMessageBytes: 50 << 20, MaxRecipients: 100,
		Trusted:     []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		ReadTimeout: time.Minute, WriteTimeout: time.Minute,
		Hop:      &relay.SMTPHop{Address: hopAddr, HeloName: "gw.test", Timeout: 10 * time.Second},
		Pipeline: p, Logger: log}
	for _, opt := range opts {
		opt(&o, p)
	}
	srv := New(o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	g := &gateway{t: t, smtpAddr: ln.Addr().String(), linkURL: hs.URL, dir: dir, store: st, audit: al, server: srv}
	if o.TLSConfig != nil {
		tln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.ServeTLS(tln)
		g.tlsAddr = tln.Addr().String()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return g
}

// dial opens a real SMTP client session to the gateway.
func (g *gateway) dial() *smtp.Client {
	g.t.Helper()
	c, err := smtp.Dial(g.smtpAddr)
	if err != nil {
		g.t.Fatal(err)
	}
	if err := c.Hello("client.test"); err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { c.Close() })
	return c
}

// send runs one transaction and returns the error of the first step that
// failed (nil when the message was accepted).
func (g *gateway) send(from string, to []string, msg []byte) error {
	c := g.dial()
	defer c.Quit()
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	return w.Close()
}

// fileCount counts regular files below dir (blobs, spool leftovers).
func fileCount(t testing.TB, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

func (g *gateway) assertNoLeftovers() {
	g.t.Helper()
	if n := fileCount(g.t, filepath.Join(g.dir, "spool")); n != 0 {
		g.t.Errorf("spool holds %d files after the transaction", n)
	}
}

// mailWithAttachment is testsupport.MailWithAttachment.
func mailWithAttachment(subject, body, name string, content []byte) []byte {
	return testsupport.MailWithAttachment(subject, body, name, content)
}

var linkRE = regexp.MustCompile(`https?://[^\s"<>]+/d/[A-Za-z0-9_-]+`)

// download follows a link the way a recipient does: landing page, then the
// form's POST with the cookie the page set, then the redirect.
func download(t *testing.T, link string) (*http.Response, []byte) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := client.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("landing page %s: %s", link, resp.Status)
	}
	form := url.Values{}
	for _, m := range regexp.MustCompile(`<input[^>]*type="hidden"[^>]*>`).FindAllString(string(page), -1) {
		name := regexp.MustCompile(`name="([^"]*)"`).FindStringSubmatch(m)
		value := regexp.MustCompile(`value="([^"]*)"`).FindStringSubmatch(m)
		if name != nil && value != nil {
			form.Set(name[1], value[1])
		}
	}
	resp, err = client.PostForm(link, form)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, data
}

func firstLink(t *testing.T, msg []byte) string {
	t.Helper()
	links := linkRE.FindAllString(string(msg), -1)
	if len(links) == 0 {
		t.Fatalf("no link in relayed message:\n%s", truncate(msg))
	}
	return links[0]
}

func truncate(b []byte) string {
	if len(b) > 4000 {
		return string(b[:4000]) + "..."
	}
	return string(b)
}

func mustContain(t *testing.T, haystack []byte, needles ...string) {
	t.Helper()
	for _, n := range needles {
		if !strings.Contains(string(haystack), n) {
			t.Errorf("missing %q in:\n%s", n, truncate(haystack))
		}
	}
}
