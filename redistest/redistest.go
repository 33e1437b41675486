// Package redistest starts a real redis-server for tests, the way
// net/http/httptest starts an HTTP server: on a free 127.0.0.1 port, with its
// data in the test's temporary directory, append-only file on (audit data
// must survive a restart), stopped when the test ends. Stop and Restart let
// outage tests take Redis away and bring it back on the same port with the
// same data.
//
// Tests skip when redis-server is not installed, unless the environment
// variable CI is set: in CI a missing server is a failure (`make deps`
// installs Debian's redis-server package).
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attachgate/attachgate/testsupport"
)

const (
	// startTimeout bounds how long a start (including an AOF reload) may
	// take before the test fails.
	startTimeout = 15 * time.Second
	// stopTimeout bounds a SHUTDOWN before the process is killed.
	stopTimeout = 10 * time.Second
	// startAttempts retries a start that lost the race for its free port.
	startAttempts = 3
)

// Server is a running (or stopped) redis-server owned by one test.
type Server struct {
	tb   testing.TB
	bin  string
	dir  string
	port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	log  *syncBuffer
}

// Start starts redis-server on a free port and stops it when the test and
// its subtests end.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := findServer()
	if err != nil {
		if os.Getenv("CI") == "" {
			tb.Skipf("redis-server not installed (make deps installs it): %v", err)
		}
		tb.Fatalf("redis-server not installed, and CI is set: %v", err)
	}
	s := &Server{tb: tb, bin: bin, dir: tb.TempDir()}
	var lastErr error
	for range startAttempts {
		s.port, err = freePort()
		if err != nil {
			tb.Fatalf("redistest: find a free port: %v", err)
		}
		if lastErr = s.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		tb.Fatalf("redistest: %v", lastErr)
	}
	tb.Cleanup(func() {
		if err := s.stop(); err != nil {
			tb.Errorf("redistest: %v", err)
		}
	})
	return s
}

// findServer looks for redis-server on PATH, then where Debian puts it.
func findServer() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	const debianPath = "/usr/bin/redis-server"
	if _, err := os.Stat(debianPath); err != nil {
		return "", fmt.Errorf("not on PATH and not at %s", debianPath)
	}
	return debianPath, nil
}

// freePort is never one another helper of this test binary handed out.
func freePort() (int, error) { return testsupport.FreePort() }

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the redis:// URL of database 0, for config store.redis.url.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Dir is the server's data directory (appendonlydir lives here).
func (s *Server) Dir() string { return s.dir }

// Stop shuts the server down (SHUTDOWN NOSAVE: the append-only file is
// flushed, no RDB snapshot is written) and waits for it to exit. The test
// fails if it does not stop. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.tb.Helper()
	if err := s.stop(); err != nil {
		s.tb.Fatalf("redistest: %v", err)
	}
}

// Restart starts a stopped server again on the same port with the same
// data directory and waits until it has reloaded its data and answers PING.
func (s *Server) Restart() {
	s.tb.Helper()
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		s.tb.Fatal("redistest: Restart of a running server; call Stop first")
	}
	if err := s.start(); err != nil {
		s.tb.Fatalf("redistest: restart: %v", err)
	}
}

func (s *Server) start() error {
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "yes",
		"--daemonize", "no",
		"--logfile", "",
	)
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	if err := waitForPong(s.Addr(), done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("redis-server on %s: %w\n%s", s.Addr(), err, log.String())
	}
	s.mu.Lock()
	s.cmd, s.done, s.log = cmd, done, log
	s.mu.Unlock()
	return nil
}

// waitForPong polls until the server answers PING with PONG (not LOADING).
func waitForPong(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("exited during start-up")
		default:
		}
		reply, err := command(addr, "PING")
		if err == nil && reply == "+PONG" {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("PING answered %q", reply)
		}
		lastErr = err
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no PONG within %s: %v", startTimeout, lastErr)
}

// command sends one inline command and returns the first reply line.
func command(addr, cmd string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

func (s *Server) stop() error {
	s.mu.Lock()
	cmd, done, log := s.cmd, s.done, s.log
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	// SHUTDOWN closes the connection without a reply when it succeeds.
	_, _ = command(s.Addr(), "SHUTDOWN NOSAVE")
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("redis-server on %s ignored SHUTDOWN for %s and was killed\n%s", s.Addr(), stopTimeout, log.String())
}

// syncBuffer collects the server's log for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
