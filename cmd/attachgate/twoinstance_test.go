package main

// Scale-out tests: two gateway processes sharing one Redis (metadata,
// counters, audit stream) and one storage directory (keys and encrypted
// blobs), and the behaviour of one gateway while Redis is away.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/redistest"
	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/store/redisstore"
	"github.com/attachgate/attachgate/vault"
)

const (
	// sharedKeyPrefix is the Redis key prefix both instances use.
	sharedKeyPrefix = "ag2:"
	// adminToken is the bearer token of the instances' admin API.
	adminToken = "two-instance-test-admin-token"
)

// startRedisInstance starts a gateway on Redis with the given shared
// storage directory and an admin API, as one of several instances behind
// an MX or relayhost list.
func startRedisInstance(t *testing.T, nextHop, storageDir, redisURL string) (*daemon, string) {
	t.Helper()
	return startRedisInstanceExtra(t, nextHop, storageDir, redisURL, "")
}

// startRedisInstanceExtra is startRedisInstance with more top-level YAML.
func startRedisInstanceExtra(t *testing.T, nextHop, storageDir, redisURL, extra string) (*daemon, string) {
	t.Helper()
	dir := t.TempDir()
	smtpAddr, linkAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	tokenSum := sha256.Sum256([]byte(adminToken))
	cfg := fmt.Sprintf(`smtp:
  listen: %q
  hostname: "gw.test"
  max_message_bytes: 157286400
  trusted_networks: ["127.0.0.0/8"]
next_hop:
  address: %q%s
links:
  listen: %q
  base_url: "http://%s"
  default_expiry: "1h"
  time_zone: "Asia/Tokyo"
storage:
  dir: %q
store:
  backend: redis
  redis:
    url: %q
    key_prefix: %q
    timeout: "2s"
admin:
  listen: %q
  tokens:
    - name: ops
      sha256: %q
      role: admin
      networks: ["127.0.0.0/8"]
%s`, smtpAddr, nextHop, hopTimeout(nextHop), linkAddr, linkAddr, storageDir, redisURL, sharedKeyPrefix, adminAddr, hex.EncodeToString(tokenSum[:]), extra)
	cfgPath := filepath.Join(dir, "attachgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, dir: dir, config: cfgPath, smtpAddr: smtpAddr, linkURL: "http://" + linkAddr,
		log: &lockedBuffer{}, exited: make(chan error, 1)}
	d.start()
	return d, "http://" + adminAddr
}

// onInstance points a link at another instance; behind a load balancer
// both would share one base_url.
func onInstance(link string, from, to *daemon) string {
	return strings.Replace(link, from.linkURL, to.linkURL, 1)
}

func TestTwoInstancesShareOneState(t *testing.T) {
	srv := redistest.Start(t)
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	shared := filepath.Join(t.TempDir(), "shared")
	a, _ := startRedisInstance(t, hop.Addr, shared, srv.URL())
	b, adminB := startRedisInstance(t, hop.Addr, shared, srv.URL())

	// Mail through A, download via B.
	content := bytes.Repeat([]byte("two instances, one state\n"), 4000)
	if err := a.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("共有.pdf", content)); err != nil {
		t.Fatalf("send through A: %v", err)
	}
	msgs := hop.Messages()
	if len(msgs) != 1 {
		t.Fatalf("next hop got %d messages", len(msgs))
	}
	links := relayedLinks(t, a, msgs[0].Data)
	if len(links) != 1 {
		t.Fatalf("links: %v", links)
	}
	resp, data := download(t, onInstance(links[0], a, b))
	if resp.StatusCode != http.StatusOK || !bytes.Equal(data, content) {
		t.Fatalf("download via B: %s, %d bytes (want %d identical)", resp.Status, len(data), len(content))
	}

	// Revoke on B (admin API); A refuses at once.
	linkID := exportedLinkID(t, a)
	revokeViaAdmin(t, adminB, linkID)
	resp, err := http.Get(links[0])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("A after B revoked the link: %s, want 410", resp.Status)
	}

	t.Run("one-time link raced on both instances", func(t *testing.T) {
		token := oneTimeLink(t, srv.URL(), shared)
		hammerOneTimeLink(t, []*daemon{a, b}, token)
	})

	// The audit export reads the same from either instance: one chain in
	// seq order holding both instances' events, and it verifies.
	today := time.Now().In(mustZone(t, "Asia/Tokyo")).Format("2006-01-02")
	var exports []string
	for _, d := range []*daemon{a, b} {
		out, errOut, code := runCLI(t, "audit", "export", "-config", d.config, "-from", today, "-to", today, "-format", "jsonl")
		if code != 0 {
			t.Fatalf("audit export: exit %d: %s", code, errOut)
		}
		exports = append(exports, out)
		verify, errOut, code := runCLI(t, "audit", "verify", "-config", d.config)
		if code != 0 || !strings.Contains(verify, "audit chain OK") {
			t.Fatalf("audit verify: exit %d: %s %s", code, verify, errOut)
		}
	}
	if exports[0] != exports[1] {
		t.Errorf("exports differ between instances:\nA: %s\nB: %s", exports[0], exports[1])
	}
	var types, refusals []string
	var prevSeq float64
	for i, line := range strings.Split(strings.TrimSpace(exports[0]), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		seq := ev["seq"].(float64)
		if i > 0 && seq != prevSeq+1 {
			t.Errorf("seq %v follows %v", seq, prevSeq)
		}
		prevSeq = seq
		types = append(types, fmt.Sprint(ev["type"]))
		if reason, ok := ev["reason"]; ok {
			refusals = append(refusals, fmt.Sprint(ev["type"], " ", reason))
		}
	}
	// mail.* through A; download.ok and the revocation through B; the
	// refusals on A (revoked) and on both (limit).
	for _, want := range []string{"mail.received", "mail.relayed", "download.ok", "admin.link.revoke", "link.revoked"} {
		if !slices.Contains(types, want) {
			t.Errorf("export lacks %s; has %q", want, types)
		}
	}
	for _, want := range []string{"link.viewed revoked", "download.denied limit"} {
		if !slices.Contains(refusals, want) {
			t.Errorf("export lacks %s; has %q", want, refusals)
		}
	}
}

// exportedLinkID finds the link of the first link.created event.
func exportedLinkID(t *testing.T, d *daemon) string {
	t.Helper()
	today := time.Now().In(mustZone(t, "Asia/Tokyo")).Format("2006-01-02")
	out, errOut, code := runCLI(t, "audit", "export", "-config", d.config, "-from", today, "-to", today,
		"-format", "jsonl", "-type", "link.created")
	if code != 0 {
		t.Fatalf("audit export: exit %d: %s", code, errOut)
	}
	var ev struct {
		LinkID string `json:"link_id"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &ev); err != nil || ev.LinkID == "" {
		t.Fatalf("link.created event %q: %v", out, err)
	}
	return ev.LinkID
}

func revokeViaAdmin(t *testing.T, adminURL, linkID string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, adminURL+"/admin/links/"+url.PathEscape(linkID)+"/revoke", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke %s via admin API: %s %s", linkID, resp.Status, body)
	}
}

// oneTimeLink stores a file and a link limited to one download straight
// through the shared state (links from mail are unlimited), and returns
// the link's token.
func oneTimeLink(t *testing.T, redisURL, storageDir string) string {
	t.Helper()
	ring, err := vault.OpenKeyRing(filepath.Join(storageDir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := vault.NewBlobStore(filepath.Join(storageDir, "blobs"), ring)
	if err != nil {
		t.Fatal(err)
	}
	st, err := redisstore.Open(context.Background(), redisstore.Options{URL: redisURL, KeyPrefix: sharedKeyPrefix})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	now := time.Now()
	m := store.Message{ID: store.NewID(), MessageID: "<once@example.com>", Sender: "alice@example.com",
		Recipients: []string{"bob@example.net"}, CreatedAt: now}
	fileID := store.NewID()
	info, err := blobs.Put(fileID, strings.NewReader("only once"))
	if err != nil {
		t.Fatal(err)
	}
	f := store.File{ID: fileID, MessageID: m.ID, Name: "once.txt", ContentType: "text/plain", Size: info.Size,
		SHA256: info.SHA256, KeyID: info.KeyID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	token, hash, err := store.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	l := store.Link{ID: store.NewID(), FileID: fileID, TokenHash: hash, CreatedAt: now,
		ExpiresAt: now.Add(time.Hour), MaxDownloads: 1}
	if err := st.CreateMessage(context.Background(), m, []store.File{f}, []store.Link{l}); err != nil {
		t.Fatal(err)
	}
	return token
}

// hammerOneTimeLink opens the landing page from many browsers spread over
// the instances, then presses every Download button at once: exactly one
// POST may count.
func hammerOneTimeLink(t *testing.T, instances []*daemon, token string) {
	const browsers = 16
	type browser struct {
		client *http.Client
		link   string
		form   url.Values
	}
	var ready []browser
	for i := range browsers {
		jar, _ := cookiejar.New(nil)
		client := &http.Client{Jar: jar, Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		link := instances[i%len(instances)].linkURL + "/d/" + token
		resp, err := client.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("landing page %d: %s", i, resp.Status)
		}
		form := url.Values{}
		for _, m := range hiddenInputRE.FindAllString(string(page), -1) {
			name, value := nameAttrRE.FindStringSubmatch(m), valueAttrRE.FindStringSubmatch(m)
			if name != nil && value != nil {
				form.Set(name[1], value[1])
			}
		}
		ready = append(ready, browser{client: client, link: link, form: form})
	}

	statuses := make([]int, browsers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, br := range ready {
		wg.Go(func() {
			<-start
			resp, err := br.client.PostForm(br.link, br.form)
			if err != nil {
				t.Errorf("POST %d: %v", i, err)
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	counted := 0
	for i, code := range statuses {
		switch code {
		case http.StatusSeeOther:
			counted++
		case http.StatusGone:
		default:
			t.Errorf("POST %d: status %d, want 303 or 410", i, code)
		}
	}
	if counted != 1 {
		t.Errorf("%d of %d concurrent downloads of a one-time link counted, want 1 (statuses %v)", counted, browsers, statuses)
	}
}

// TestRedisOutage: with Redis stopped the gateway answers 451 4.3.0 to
// mail (the sender's MTA retries) and 503 with a page to browsers; once
// Redis is back both work again, without restarting the gateway.
func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d, _ := startRedisInstance(t, hop.Addr, filepath.Join(t.TempDir(), "data"), srv.URL())
	if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("before.pdf", []byte("before"))); err != nil {
		t.Fatalf("send before the outage: %v", err)
	}
	link := relayedLinks(t, d, hop.Messages()[0].Data)[0]

	srv.Stop()
	started := time.Now()
	err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("during.pdf", []byte("during")))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 0}) {
		t.Errorf("send during the outage: %v, want 451 4.3.0", err)
	}
	if took := time.Since(started); took > 15*time.Second {
		t.Errorf("refusing the mail took %s; timeouts are not bounded", took)
	}
	if n := len(hop.Messages()); n != 1 {
		t.Errorf("next hop got %d messages, want only the one before the outage", n)
	}
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(string(page), "<html") {
		t.Errorf("link during the outage: %s, Retry-After %q, page %q; want 503 with a page",
			resp.Status, resp.Header.Get("Retry-After"), page)
	}

	// The health check tells a load balancer to send browsers elsewhere.
	if code := healthStatus(t, d); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz during the outage: %d, want 503", code)
	}

	srv.Restart()
	// go-redis redials on its own; allow it a few seconds.
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("after.pdf", []byte("after")))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mail still refused after Redis returned: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if resp, data := download(t, link); resp.StatusCode != http.StatusOK || string(data) != "before" {
		t.Errorf("link from before the outage: %s %q", resp.Status, data)
	}
	if code := healthStatus(t, d); code != http.StatusOK {
		t.Errorf("/healthz after the outage: %d, want 200", code)
	}
	msgs := hop.Messages()
	if resp, data := download(t, relayedLinks(t, d, msgs[len(msgs)-1].Data)[0]); resp.StatusCode != http.StatusOK || string(data) != "after" {
		t.Errorf("link from after the outage: %s %q", resp.Status, data)
	}
	if out, errOut, code := runCLI(t, "audit", "verify", "-config", d.config); code != 0 {
		t.Errorf("audit verify after the outage: exit %d: %s %s", code, out, errOut)
	}
}

func healthStatus(t *testing.T, d *daemon) int {
	t.Helper()
	resp, err := http.Get(d.linkURL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestOpenBackendWarnsWithoutPersistence: a Redis that would lose the
// audit log on restart is reported at start-up, and one with AOF is not.
func TestOpenBackendWarnsWithoutPersistence(t *testing.T) {
	srv := redistest.Start(t)
	c, err := config.Parse(strings.NewReader(fmt.Sprintf("storage:\n  dir: %q\nstore:\n  backend: redis\n  redis:\n    url: %q\n",
		filepath.Join(t.TempDir(), "data"), srv.URL())))
	if err != nil {
		t.Fatal(err)
	}
	open := func() string {
		t.Helper()
		var logged lockedBuffer
		b, err := openBackend(c, slog.New(slog.NewTextHandler(&logged, nil)))
		if err != nil {
			t.Fatal(err)
		}
		b.Close()
		return logged.String()
	}
	if out := open(); strings.Contains(out, "persist") {
		t.Errorf("warning with AOF on: %s", out)
	}
	client, err := redisstore.NewClient(redisstore.Options{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.ConfigSet(context.Background(), "appendonly", "no").Err(); err != nil {
		t.Fatal(err)
	}
	if out := open(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "no persistence") {
		t.Errorf("no warning without persistence: %q", out)
	}
}

// BenchmarkInstanceMail measures the throughput of one gateway instance,
// end to end: concurrent SMTP clients each send a mail with a 10 KiB
// attachment, which the daemon stores (blob, metadata, audit events) and
// relays to a local next hop. The daemon is a plain build (the tests'
// binary is built with -race, which would dominate the figures).
//
//	go test -run '^$' -bench BenchmarkInstanceMail -benchtime 2000x ./cmd/attachgate/
func BenchmarkInstanceMail(b *testing.B) {
	bin := plainBinary(b)
	b.Run("sqlite", func(b *testing.B) { benchInstanceMail(b, bin, "") })
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		benchInstanceMail(b, bin, fmt.Sprintf("store:\n  backend: redis\n  redis:\n    url: %q\n", srv.URL()))
	})
}

func plainBinary(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "attachgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build attachgate: %v\n%s", err, out)
	}
	return bin
}

func benchInstanceMail(b *testing.B, bin, storeYAML string) {
	hop := smtptest.NewServer(b, smtptest.Behaviour{})
	dir := b.TempDir()
	smtpAddr, linkAddr := freeAddr(b), freeAddr(b)
	cfg := fmt.Sprintf(`smtp:
  listen: %q
  hostname: "gw.test"
  trusted_networks: ["127.0.0.0/8"]
  max_connections_per_client: 1000
next_hop:
  address: %q
links:
  listen: %q
  base_url: "http://%s"
storage:
  dir: %q
log:
  level: "warn"
%s`, smtpAddr, hop.Addr, linkAddr, linkAddr, filepath.Join(dir, "data"), storeYAML)
	cfgPath := filepath.Join(dir, "attachgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	var log lockedBuffer
	cmd := exec.Command(bin, "serve", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("tcp", smtpAddr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("attachgate did not listen: %s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	msg := mailWithAttachment("bench.pdf", bytes.Repeat([]byte("0123456789abcdef"), 640))
	b.SetParallelism(2)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := sendMail(smtpAddr, "alice@example.com", []string{"bob@example.net"}, msg); err != nil {
				b.Errorf("send: %v\n%s", err, log.String())
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "mails/s")
}
