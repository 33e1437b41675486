package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/testsupport"
)

// TestUserCommandAndAuth manages a user with the CLI (password on stdin,
// never argv) and relays as that user over STARTTLS from an untrusted
// network; deleting the user and sending SIGHUP takes effect at once.
func TestUserCommandAndAuth(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	cert := smtptest.NewCert(t, "gw.test")
	usersFile := filepath.Join(t.TempDir(), "users")
	d := startDaemon(t, hop.Addr, "")
	// Rewrite the config: trust no network, enable TLS and AUTH.
	cfg, _ := os.ReadFile(d.config)
	cfg = bytes.Replace(cfg, []byte(`trusted_networks: ["127.0.0.0/8"]`), []byte(fmt.Sprintf(
		"trusted_networks: [\"10.0.0.0/8\"]\n  tls:\n    cert_file: %q\n    key_file: %q\n  auth:\n    users_file: %q",
		cert.CertFile, cert.KeyFile, usersFile)), 1)
	os.WriteFile(d.config, cfg, 0o600)

	cmd := exec.Command(binPath, "user", "add", "-config", d.config, "alice")
	cmd.Stdin = strings.NewReader("s3cret password\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	raw, _ := os.ReadFile(usersFile)
	if bytes.Contains(raw, []byte("s3cret")) || !bytes.Contains(raw, []byte("alice:$argon2id$")) {
		t.Fatalf("users file: %s", raw)
	}
	d.stop()
	d.start()

	send := func() error {
		c, err := smtp.DialStartTLS(d.smtpAddr, cert.ClientConfig())
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Auth(sasl.NewPlainClient("", "alice", "s3cret password")); err != nil {
			return err
		}
		if err := c.Mail("alice@example.com", nil); err != nil {
			return err
		}
		if err := c.Rcpt("bob@example.net", nil); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		io.WriteString(w, "Subject: authenticated\r\n\r\nhi\r\n")
		return w.Close()
	}
	if err := send(); err != nil {
		t.Fatalf("authenticated send: %v", err)
	}
	if err := d.send("x@example.com", []string{"y@example.net"}, []byte("Subject: x\r\n\r\nx\r\n")); err == nil {
		t.Fatal("an unauthenticated client from an untrusted network relayed")
	}

	cmd = exec.Command(binPath, "user", "delete", "-config", d.config, "alice")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("user delete: %v\n%s", err, out)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := send()
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code == 535 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deleted user still authenticates after SIGHUP: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// filesContaining lists files under dir that contain marker.
func filesContaining(t *testing.T, dir string, marker []byte) []string {
	var hits []string
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || !e.Type().IsRegular() {
			return nil
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, marker) {
			hits = append(hits, p)
		}
		return nil
	})
	return hits
}

// TestKillDuringDataLeavesNothingReadable kills the daemon with SIGKILL in
// the middle of a DATA upload: the client never hears 250, no plaintext is
// left on disk, and the next start removes the encrypted spool leftover.
func TestKillDuringDataLeavesNothingReadable(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, "")
	marker := []byte("PLAINTEXT-MARKER-7c1e")

	c, err := smtp.Dial(d.smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Hello("client.test")
	c.Mail("a@example.com", nil)
	c.Rcpt("b@example.net", nil)
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "Subject: crash\r\nContent-Type: text/plain\r\n\r\n")
	line := append(bytes.Repeat(marker, 40), '\r', '\n')
	for i := 0; i < 4000; i++ { // ~3.3 MB, well past any buffer
		if _, err := w.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	spool := filepath.Join(d.dir, "data", "spool")
	waitFor(t, "spool file", func() bool {
		ents, _ := os.ReadDir(spool)
		return len(ents) > 0
	})
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-waitExit(d)
	if err := w.Close(); err == nil {
		t.Fatal("client heard 250 from a killed daemon")
	}
	if hits := filesContaining(t, filepath.Join(d.dir, "data"), marker); len(hits) > 0 {
		t.Fatalf("plaintext on disk after crash: %v", hits)
	}
	if len(hop.Messages()) != 0 {
		t.Fatal("next hop got a message the client never finished")
	}
	d.start()
	ents, _ := os.ReadDir(spool)
	if len(ents) != 0 {
		t.Fatalf("spool leftovers after restart: %d", len(ents))
	}
}

// TestSIGTERMDrainsTransactions: a message in flight when SIGTERM arrives
// is finished (the client hears the next hop's 250), then the daemon exits.
func TestSIGTERMDrainsTransactions(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{HangAtDataEnd: 2 * time.Second})
	d := startDaemon(t, hop.Addr, "")
	result := make(chan error, 1)
	go func() {
		result <- d.send("a@example.com", []string{"b@example.net"}, mailWithAttachment("drain.pdf", []byte("drain me")))
	}()
	waitFor(t, "transaction in flight", func() bool { return hop.OpenSessions() > 0 })
	time.Sleep(500 * time.Millisecond) // let DATA reach the next hop
	d.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-result; err != nil {
		t.Fatalf("in-flight message during SIGTERM: %v", err)
	}
	select {
	case err := <-d.exited:
		d.exited <- err
		if err != nil {
			t.Fatalf("exit after drain: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not exit after draining")
	}
	if len(hop.Messages()) != 1 {
		t.Fatalf("next hop got %d messages", len(hop.Messages()))
	}
}

// waitFor is testsupport.WaitFor.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testsupport.WaitFor(t, what, cond)
}

// waitExit returns a channel closed when the daemon process has exited.
func waitExit(d *daemon) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		err := <-d.exited
		d.exited <- err
		close(done)
	}()
	return done
}
