package main

// End-to-end tests: the real attachgate binary, started as a process with a
// config file, a real go-smtp next hop on 127.0.0.1, mail sent with a real
// SMTP client and links followed with net/http.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/testsupport"
)

var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "attachgate-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "attachgate")
	out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
	if err != nil {
		// -race needs cgo; fall back to a plain build.
		out, err = exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "build attachgate: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a running `attachgate serve`.
type daemon struct {
	t        *testing.T
	cmd      *exec.Cmd
	dir      string
	config   string
	smtpAddr string
	linkURL  string
	log      *lockedBuffer
	exited   chan error
}

func freeAddr(t testing.TB) string {
	t.Helper()
	port, err := testsupport.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// lockedBuffer collects the daemon's log; exec writes it from its own
// goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startDaemon writes a config with the given next hop (and extra YAML
// appended under the top level) and starts the binary.
func startDaemon(t *testing.T, nextHop string, extra string) *daemon {
	t.Helper()
	return startDaemonLinks(t, nextHop, "", "", extra)
}

// startDaemonLinks is startDaemon with links.base_url (default: the
// listener's http URL) and more keys under links: (indented lines).
func startDaemonLinks(t *testing.T, nextHop, baseURL, linksExtra, extra string) *daemon {
	t.Helper()
	dir := t.TempDir()
	smtpAddr, linkAddr := freeAddr(t), freeAddr(t)
	if baseURL == "" {
		baseURL = "http://" + linkAddr
	}
	cfg := fmt.Sprintf(`smtp:
  listen: %q
  hostname: "gw.test"
  max_message_bytes: 157286400
  trusted_networks: ["127.0.0.0/8"]
next_hop:
  address: %q%s
links:
  listen: %q
  base_url: %q
  default_expiry: "1h"
  time_zone: "Asia/Tokyo"
%sstorage:
  dir: %q
%s`, smtpAddr, nextHop, hopTimeout(nextHop), linkAddr, baseURL, linksExtra, filepath.Join(dir, "data"), extra)
	cfgPath := filepath.Join(dir, "attachgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	scheme := "http://"
	if strings.Contains(linksExtra, "cert_file") {
		scheme = "https://" // links.tls: the listener itself speaks TLS
	}
	d := &daemon{t: t, dir: dir, config: cfgPath, smtpAddr: smtpAddr, linkURL: scheme + linkAddr,
		log: &lockedBuffer{}, exited: make(chan error, 1)}
	d.start()
	return d
}

// hopTimeout is the next_hop.timeout line for an SMTP next hop; an
// outbox: next hop has no timeout, and config refuses one there.
func hopTimeout(nextHop string) string {
	if strings.HasPrefix(nextHop, "outbox:") {
		return ""
	}
	return "\n  timeout: \"20s\""
}

func (d *daemon) start() {
	d.t.Helper()
	d.cmd = exec.Command(binPath, "serve", "-config", d.config)
	d.cmd.Stdout = d.log
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	exited := make(chan error, 1)
	d.exited = exited
	go func() { exited <- d.cmd.Wait() }()
	d.t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-exited
		if d.t.Failed() {
			d.t.Logf("daemon log:\n%s", d.log.String())
		}
	})
	// Ready when both listeners answer.
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range []string{d.smtpAddr, strings.TrimPrefix(strings.TrimPrefix(d.linkURL, "http://"), "https://")} {
		for {
			c, err := net.Dial("tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			select {
			case err := <-exited:
				d.t.Fatalf("attachgate exited at start: %v\n%s", err, d.log.String())
			default:
			}
			if time.Now().After(deadline) {
				d.t.Fatalf("attachgate did not listen on %s\n%s", addr, d.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() error {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		d.exited <- err // let Cleanup's wait return
		return err
	case <-time.After(90 * time.Second):
		return fmt.Errorf("attachgate did not stop within 90s of SIGTERM")
	}
}

func (d *daemon) send(from string, to []string, msg []byte) error {
	return sendMail(d.smtpAddr, from, to, msg)
}

// sendMail delivers msg over one SMTP session with a real client.
func sendMail(addr, from string, to []string, msg []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return err
	}
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
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

var (
	hiddenInputRE = regexp.MustCompile(`<input[^>]*type="hidden"[^>]*>`)
	nameAttrRE    = regexp.MustCompile(`name="([^"]*)"`)
	valueAttrRE   = regexp.MustCompile(`value="([^"]*)"`)
)

// download follows a link as a browser does: landing page, the form's POST
// with its fields and cookie, then the redirects.
func download(t *testing.T, link string) (*http.Response, []byte) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 60 * time.Second}
	resp, err := client.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("landing page %s: %s", link, resp.Status)
	}
	if n := strings.Count(string(page), `<form method="post"`); n != 1 {
		t.Fatalf("landing page has %d post forms, want 1", n)
	}
	form := url.Values{}
	for _, m := range hiddenInputRE.FindAllString(string(page), -1) {
		name, value := nameAttrRE.FindStringSubmatch(m), valueAttrRE.FindStringSubmatch(m)
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
