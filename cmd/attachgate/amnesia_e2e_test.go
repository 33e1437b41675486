package main

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/redistest"
	"github.com/attachgate/attachgate/smtptest"
)

const lostLine = "metadata store is not the dataset this instance served"

// refuses waits until d refuses mail with 451 4.3.0, link pages with 503
// and /healthz with 503.
func refuses(t *testing.T, d *daemon, link string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("after.pdf", []byte("after")))
		var se *smtp.SMTPError
		mailRefused := errors.As(err, &se) && se.Code == 451 && se.EnhancedCode == (smtp.EnhancedCode{4, 3, 0})
		health, herr := http.Get(d.linkURL + "/healthz")
		page, perr := http.Get(link)
		if herr == nil {
			health.Body.Close()
		}
		if perr == nil {
			page.Body.Close()
		}
		if mailRefused && herr == nil && health.StatusCode == 503 && perr == nil && page.StatusCode == 503 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not refusing: mail %v, healthz %v %v, link %v %v\n%s", err, health, herr, page, perr, d.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Issue 15 part 1: Redis restarted without its data under two running
// instances. Both used to keep answering 250 with the old links 404 and
// the audit chain restarting at seq 1. Now both refuse within seconds,
// each logs the state change once, and verify names the lost range.
func TestRedisAmnesiaUnderTwoInstances(t *testing.T) {
	srv := redistest.Start(t)
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	shared := filepath.Join(t.TempDir(), "shared")
	a, _ := startRedisInstance(t, hop.Addr, shared, srv.URL())
	b, _ := startRedisInstance(t, hop.Addr, shared, srv.URL())
	if err := a.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("before.pdf", bytes.Repeat([]byte("x"), 5000))); err != nil {
		t.Fatalf("send: %v", err)
	}
	links := relayedLinks(t, a, hop.Messages()[0].Data)
	if len(links) != 1 {
		t.Fatalf("links: %v", links)
	}
	out, _, code := runCLI(t, "audit", "verify", "-config", a.config)
	if code != 0 {
		t.Fatalf("verify before: %s", out)
	}

	srv.Stop()
	entries, _ := os.ReadDir(srv.Dir())
	for _, e := range entries {
		os.RemoveAll(filepath.Join(srv.Dir(), e.Name()))
	}
	srv.Restart()

	refuses(t, a, links[0])
	refuses(t, b, onInstance(links[0], a, b))
	if n := len(hop.Messages()); n != 1 {
		t.Errorf("next hop got %d messages; nothing may be relayed while refusing", n)
	}
	for name, d := range map[string]*daemon{"A": a, "B": b} {
		if n := strings.Count(d.log.String(), lostLine); n != 1 {
			t.Errorf("instance %s logged the lost dataset %d times, want once:\n%s", name, n, d.log.String())
		}
	}
	out, errOut, code := runCLI(t, "audit", "verify", "-config", a.config)
	if code != 1 || !strings.Contains(out+errOut, "truncated: events seq 1..") {
		t.Errorf("verify after amnesia: exit %d\n%s%s", code, out, errOut)
	}
}

// The same for SQLite: attachgate.db replaced by an empty file while the
// gateway was down.
func TestSQLiteReplacedRefuses(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, "")
	if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("before.pdf", []byte("before"))); err != nil {
		t.Fatalf("send: %v", err)
	}
	links := relayedLinks(t, d, hop.Messages()[0].Data)
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(d.dir, "data", "attachgate.db")
	for _, p := range []string{db, db + "-wal", db + "-shm"} {
		os.Remove(p)
	}
	if err := os.WriteFile(db, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d.log = &lockedBuffer{}
	d.start()
	refuses(t, d, links[0])
	if n := len(hop.Messages()); n != 1 {
		t.Errorf("next hop got %d messages while refusing", n)
	}
	if n := strings.Count(d.log.String(), lostLine); n != 1 {
		t.Errorf("lost dataset logged %d times, want once:\n%s", n, d.log.String())
	}

	// The operator inspects, then re-initialises deliberately.
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, "recover", "-config", d.config)
	if code != 0 || !strings.Contains(out, "lost audit events: seq 1..") || !strings.Contains(out, "blobs without a file record (their links are lost with the store): 1") {
		t.Fatalf("recover report: exit %d\n%s%s", code, out, errOut)
	}
	if out, errOut, code = runCLI(t, "recover", "-config", d.config, "-yes"); code != 0 {
		t.Fatalf("recover -yes: exit %d\n%s%s", code, out, errOut)
	}
	d.log = &lockedBuffer{}
	d.start()
	if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("again.pdf", []byte("again"))); err != nil {
		t.Fatalf("send after recover: %v\n%s", err, d.log.String())
	}
	out, errOut, code = runCLI(t, "audit", "verify", "-config", d.config)
	if code != 0 || !strings.Contains(out, "anchored at purged seq") {
		t.Errorf("verify after recover: exit %d\n%s%s", code, out, errOut)
	}
	out, _, _ = runCLI(t, "audit", "export", "-config", d.config, "-from", "2000-01-01", "-to", "2100-01-01", "-format", "jsonl")
	if !strings.Contains(out, "lost with the store: events seq 1..") || !strings.Contains(out, "admin.recover") {
		t.Errorf("the loss is not recorded in the audit log:\n%s", out)
	}
}
