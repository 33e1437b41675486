package main

// The README's Postfix recipe, run for real: a private Postfix instance
// (its own config_directory, queue and log under a temporary directory)
// configured with contrib/postfix/main.cf and master.cf — the files the
// README shows verbatim (TestReadmeShowsPostfixRecipe) — in front of the
// attachgate binary, with a go-smtp server as the final destination.

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/attachgate/attachgate/testsupport/postfix"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/smtptest"
)

const (
	recipeMain          = "../../contrib/postfix/main.cf"
	recipeMaster        = "../../contrib/postfix/master.cf"
	recipeProxyMaster   = "../../contrib/postfix/master-proxy.cf"
	recipeRelayhostMain = "../../contrib/postfix/main-relayhost.cf"
	// The addresses the recipes use; the test puts free ports in their place.
	recipeFilterAddr    = "[127.0.0.1]:2525"
	recipeReinjectAddr  = "127.0.0.1:10026"
	recipeProxyAddr     = "127.0.0.1:2525"
	recipeRelayhostAddr = "[gw.example.com]:2525"
	recipeSubmission    = "submission inet"
)

// postfixInstance is a running private Postfix.
type postfixInstance struct {
	t      *testing.T
	dir    string // holds etc/, queue/, data/, maillog
	etc    string
	submit string // host:port of its SMTP listener
}

// testMasterCf is the rest of a master.cf: the services Postfix itself
// needs and a listener to submit on (added per test).
const testMasterCf = postfix.MasterServices

// readRecipe returns a recipe file with the one address it must contain
// replaced by addr.
func readRecipe(t *testing.T, path, recipeAddr, addr string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), recipeAddr); n != 1 {
		t.Fatalf("%s names %s %d times, want once", path, recipeAddr, n)
	}
	return strings.Replace(string(data), recipeAddr, addr, 1)
}

// postfixConfig is what a test adds to the private instance's own
// settings: main.cf and master.cf lines (recipes with their ports
// replaced), and whether the recipe brings the submission listener.
type postfixConfig struct {
	main, master string
	ownSubmit    bool // master has "submission inet": it becomes the test's listener
}

// startPostfix runs a private Postfix with cfg on 127.0.0.1.
func startPostfix(t *testing.T, cfg postfixConfig, waitFor ...string) *postfixInstance {
	t.Helper()
	postfix, err := exec.LookPath("postfix")
	if err != nil {
		if _, err = os.Stat("/usr/sbin/postfix"); err == nil {
			postfix = "/usr/sbin/postfix"
		}
	}
	if postfix == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("postfix missing: make deps installs it")
		}
		t.Skip("postfix not installed (make deps installs it)")
	}
	if os.Geteuid() != 0 {
		t.Skip("Postfix's master daemon runs as root; run the tests as root (make test does in CI)")
	}
	// Postfix's daemons run as the postfix user: the directory must be
	// reachable for them (t.TempDir's parent is 0700).
	dir, err := os.MkdirTemp("", "ag-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	p := &postfixInstance{t: t, dir: dir, etc: filepath.Join(dir, "etc"), submit: freeAddr(t)}
	t.Cleanup(func() {
		exec.Command(postfix, "-c", p.etc, "stop").Run()
		if t.Failed() {
			log, _ := os.ReadFile(p.maillog())
			t.Logf("postfix log:\n%s", log)
		}
		os.RemoveAll(dir)
	})
	os.Chmod(dir, 0o755)
	for _, d := range []string{"etc", "queue", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chown", "postfix", filepath.Join(dir, "data")).CombinedOutput(); err != nil {
		t.Fatalf("chown data directory: %v\n%s", err, out)
	}
	main := fmt.Sprintf(`# test instance
compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
myhostname = postfix.test
mydomain = postfix.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtp_tls_security_level = none
alias_maps =
alias_database =
%[2]s`, dir, cfg.main)
	master := testMasterCf
	if cfg.ownSubmit {
		if strings.Count(cfg.master, recipeSubmission) != 1 {
			t.Fatalf("recipe has no single %q listener", recipeSubmission)
		}
		master += strings.Replace(cfg.master, recipeSubmission, p.submit+" inet", 1)
	} else {
		master += p.submit + " inet n - n - - smtpd\n" + cfg.master
	}
	if err := os.WriteFile(filepath.Join(p.etc, "main.cf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.etc, "master.cf"), []byte(master), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(postfix, "-c", p.etc, "check").CombinedOutput(); err != nil {
		t.Fatalf("postfix check: %v\n%s", err, out)
	}
	if out, err := exec.Command(postfix, "-c", p.etc, "start").CombinedOutput(); err != nil {
		t.Fatalf("postfix start: %v\n%s", err, out)
	}
	for _, addr := range append([]string{p.submit}, waitFor...) {
		waitListening(t, addr)
	}
	return p
}

// bracket writes host:port as Postfix's [host]:port (no MX lookup).
func bracket(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	return "[" + host + "]:" + port
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *postfixInstance) maillog() string { return filepath.Join(p.dir, "maillog") }

func (p *postfixInstance) log() string {
	data, _ := os.ReadFile(p.maillog())
	return string(data)
}

// queueIDs returns the queue IDs of the messages with this Message-ID:
// one before the filter, one after re-injection.
func (p *postfixInstance) queueIDs(messageID string) []string {
	re := regexp.MustCompile(`([0-9A-Za-z]+): message-id=` + regexp.QuoteMeta(messageID))
	var ids []string
	for _, m := range re.FindAllStringSubmatch(p.log(), -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// waitLog waits until the log has a line matching re and returns it.
func (p *postfixInstance) waitLog(re *regexp.Regexp) string {
	p.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if m := re.FindString(p.log()); m != "" {
			return m
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("postfix never logged %s", re)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *postfixInstance) postqueue(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("postqueue", append([]string{"-c", p.etc}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("postqueue %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// waitMessages waits for n messages at the final destination.
func waitMessages(t *testing.T, hop *smtptest.Server, n int) []smtptest.Message {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		msgs := hop.Messages()
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("final destination got %d messages, want %d", len(msgs), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func postfixMail(messageID string, content []byte) []byte {
	m := mailWithAttachment("報告書.pdf", content)
	return regexp.MustCompile(`Message-ID: <[^>]*>`).ReplaceAll(m, []byte("Message-ID: "+messageID))
}

// TestPostfixRecipe: mail submitted to Postfix goes through attachgate
// and arrives rewritten with a working link, Postfix logging status=sent
// for both legs; always_bcc adds its recipient once; with attachgate down
// the mail is deferred, never bounced, and goes out after attachgate is
// back and postqueue -f.
func TestPostfixRecipe(t *testing.T) {
	final := smtptest.NewServer(t, smtptest.Behaviour{})
	reinject := freeAddr(t)
	d := startDaemon(t, reinject, "")
	pf := startPostfix(t, postfixConfig{
		main: "relayhost = " + bracket(final.Addr) + "\nalways_bcc = archive@archive.example\n" +
			"# README recipe (contrib/postfix/main.cf)\n" + readRecipe(t, recipeMain, recipeFilterAddr, bracket(d.smtpAddr)),
		master: "# README recipe (contrib/postfix/master.cf)\n" + readRecipe(t, recipeMaster, recipeReinjectAddr, reinject),
	}, reinject)

	// 1. Through the filter, rewritten, delivered.
	content := make([]byte, 200<<10)
	rand.Read(content)
	mid := "<postfix-1@example.com>"
	if err := sendMail(pf.submit, "alice@example.com", []string{"bob@example.net"}, postfixMail(mid, content)); err != nil {
		t.Fatalf("submit to postfix: %v", err)
	}
	msgs := waitMessages(t, final, 1)
	ids := pf.queueIDs(mid)
	if len(ids) != 2 {
		t.Fatalf("want the message queued twice (before the filter, after re-injection), got queue IDs %v", ids)
	}
	_, agPort, _ := net.SplitHostPort(d.smtpAddr)
	_, finalPort, _ := net.SplitHostPort(final.Addr)
	pf.waitLog(regexp.MustCompile(ids[0] + `: to=<bob@example.net>, relay=127.0.0.1\[127.0.0.1\]:` + agPort + `, .*status=sent \(250 [^)]*` + ids[1] + `\)`))
	for _, rcpt := range []string{"bob@example.net", "archive@archive.example"} {
		pf.waitLog(regexp.MustCompile(ids[1] + `: to=<` + regexp.QuoteMeta(rcpt) + `>, relay=127.0.0.1\[127.0.0.1\]:` + finalPort + `, .*status=sent`))
	}
	msgs = final.Messages()
	count := map[string]int{}
	for _, m := range msgs {
		if !bytes.Contains(m.Data, []byte(mid)) {
			t.Fatalf("unexpected message at the final destination:\n%s", m.Data)
		}
		for _, r := range m.To {
			count[r]++
		}
	}
	if count["bob@example.net"] != 1 || count["archive@archive.example"] != 1 || len(count) != 2 {
		t.Fatalf("each recipient must arrive once, got %v", count)
	}
	links := relayedLinks(t, d, msgs[0].Data)
	if len(links) != 1 {
		t.Fatalf("want one link in the delivered mail, got %v", links)
	}
	if resp, data := download(t, links[0]); resp.StatusCode != 200 || !bytes.Equal(data, content) {
		t.Fatalf("download: %s", resp.Status)
	}
	if bytes.Contains(msgs[0].Data, []byte("Content-Disposition: attachment")) {
		t.Fatal("the attachment is still in the delivered mail")
	}

	// 2. attachgate down: deferred, never bounced; delivered after it is
	// back and postqueue -f.
	if err := d.stop(); err != nil {
		t.Fatalf("stop attachgate: %v", err)
	}
	mid2 := "<postfix-2@example.com>"
	if err := sendMail(pf.submit, "alice@example.com", []string{"carol@example.net"}, postfixMail(mid2, content)); err != nil {
		t.Fatalf("submit to postfix: %v", err)
	}
	pf.waitLog(regexp.MustCompile(`: message-id=` + regexp.QuoteMeta(mid2)))
	id := pf.queueIDs(mid2)[0]
	pf.waitLog(regexp.MustCompile(id + `: to=<carol@example.net>, relay=.*status=deferred`))
	if q := pf.postqueue("-p"); !strings.Contains(q, id) {
		t.Fatalf("the deferred mail is not in the queue:\n%s", q)
	}
	d.start()
	pf.postqueue("-f")
	pf.waitLog(regexp.MustCompile(id + `: to=<carol@example.net>, relay=127.0.0.1\[127.0.0.1\]:` + agPort + `, .*status=sent`))
	msgs = waitMessages(t, final, len(msgs)+1)
	last := msgs[len(msgs)-1]
	if !bytes.Contains(last.Data, []byte(mid2)) || len(relayedLinks(t, d, last.Data)) != 1 {
		t.Fatal("the deferred mail did not arrive rewritten")
	}
	if strings.Contains(pf.log(), "status=bounced") {
		t.Fatal("postfix bounced mail")
	}
}

// TestReadmeShowsPostfixRecipe: the README shows the files of
// contrib/postfix verbatim, each as a whole code block, so the recipe an
// admin copies is the one TestPostfixRecipe runs.
func TestReadmeShowsPostfixRecipe(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{recipeMain, recipeMaster, recipeProxyMaster, recipeRelayhostMain} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(readme, append(append([]byte("```\n"), data...), "```\n"...)) {
			t.Errorf("README.md does not show %s verbatim in a code block", f)
		}
	}
}

// TestPostfixBeforeQueue: with the before-queue recipe (the submission
// listener proxies to attachgate) the client's DATA is answered only after
// attachgate and the re-injection listener took the mail; with attachgate
// down the client gets a 4xx and Postfix keeps nothing.
func TestPostfixBeforeQueue(t *testing.T) {
	final := smtptest.NewServer(t, smtptest.Behaviour{})
	reinject := freeAddr(t)
	d := startDaemon(t, reinject, "")
	pf := startPostfix(t, postfixConfig{
		main: "relayhost = " + bracket(final.Addr) + "\n",
		master: "# README recipes (contrib/postfix/master-proxy.cf, master.cf)\n" +
			readRecipe(t, recipeProxyMaster, recipeProxyAddr, d.smtpAddr) +
			readRecipe(t, recipeMaster, recipeReinjectAddr, reinject),
		ownSubmit: true,
	}, reinject)

	content := make([]byte, 100<<10)
	rand.Read(content)
	mid := "<proxy-1@example.com>"
	if err := sendMail(pf.submit, "alice@example.com", []string{"bob@example.net"}, postfixMail(mid, content)); err != nil {
		t.Fatalf("submit: %v", err)
	}
	ids := pf.queueIDs(mid)
	if len(ids) != 1 {
		t.Fatalf("before-queue: the mail is queued once, after attachgate; got %v", ids)
	}
	_, finalPort, _ := net.SplitHostPort(final.Addr)
	pf.waitLog(regexp.MustCompile(ids[0] + `: to=<bob@example.net>, relay=127.0.0.1\[127.0.0.1\]:` + finalPort + `, .*status=sent`))
	msgs := waitMessages(t, final, 1)
	links := relayedLinks(t, d, msgs[0].Data)
	if len(links) != 1 {
		t.Fatalf("want one link, got %v", links)
	}
	if resp, data := download(t, links[0]); resp.StatusCode != 200 || !bytes.Equal(data, content) {
		t.Fatalf("download: %s", resp.Status)
	}

	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	err := sendMail(pf.submit, "alice@example.com", []string{"carol@example.net"}, postfixMail("<proxy-2@example.com>", content))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code < 400 || se.Code > 499 {
		t.Fatalf("attachgate down: want a 4xx for the client, got %v", err)
	}
	// The refused mail is not queued. (Postfix may queue its own notice
	// to postmaster about the proxy failure for a moment: not the mail.)
	if q := pf.postqueue("-p"); strings.Contains(q, "carol@example.net") || strings.Contains(q, "alice@example.com") {
		t.Fatalf("Postfix kept mail it refused:\n%s", q)
	}
}

// TestPostfixRelayhost: with attachgate as Postfix's relayhost and the
// final destination as attachgate's next hop, mail arrives rewritten; with
// attachgate down it is deferred and goes out after postqueue -f.
func TestPostfixRelayhost(t *testing.T) {
	final := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, final.Addr, "")
	pf := startPostfix(t, postfixConfig{
		main: "# README recipe (contrib/postfix/main-relayhost.cf)\n" +
			readRecipe(t, recipeRelayhostMain, recipeRelayhostAddr, bracket(d.smtpAddr)),
	})
	_, agPort, _ := net.SplitHostPort(d.smtpAddr)
	content := make([]byte, 100<<10)
	rand.Read(content)
	for i, stopped := range []bool{false, true} {
		mid := fmt.Sprintf("<relayhost-%d@example.com>", i)
		if stopped {
			if err := d.stop(); err != nil {
				t.Fatal(err)
			}
		}
		if err := sendMail(pf.submit, "alice@example.com", []string{"bob@example.net"}, postfixMail(mid, content)); err != nil {
			t.Fatalf("submit: %v", err)
		}
		pf.waitLog(regexp.MustCompile(`: message-id=` + regexp.QuoteMeta(mid)))
		id := pf.queueIDs(mid)[0]
		if stopped {
			pf.waitLog(regexp.MustCompile(id + `: to=<bob@example.net>, relay=.*status=deferred`))
			d.start()
			pf.postqueue("-f")
		}
		pf.waitLog(regexp.MustCompile(id + `: to=<bob@example.net>, relay=127.0.0.1\[127.0.0.1\]:` + agPort + `, .*status=sent`))
		msgs := waitMessages(t, final, i+1)
		if last := msgs[len(msgs)-1]; !bytes.Contains(last.Data, []byte(mid)) || len(relayedLinks(t, d, last.Data)) != 1 {
			t.Fatalf("mail %d did not arrive rewritten", i)
		}
	}
	if strings.Contains(pf.log(), "status=bounced") {
		t.Fatal("postfix bounced mail")
	}
}
