// Package clamdtest starts a real ClamAV daemon (clamd) for tests: its
// configuration and a one-signature database (the EICAR test signature,
// written by the test, nothing downloaded) in the test's temporary
// directory, listening on a free 127.0.0.1 port or a Unix socket, stopped
// when the test ends. A missing clamd fails the test: `make deps` installs
// Debian's clamav-daemon.
package clamdtest

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/attachgate/attachgate/scan"
	"github.com/attachgate/attachgate/testsupport"
)

// EICAR is the anti-virus test file: every scanner reports it, it harms
// nothing.
const EICAR = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// Signature is the name clamd reports for EICAR with the database written
// here (clamd marks signatures from outside its official databases
// UNOFFICIAL).
const Signature = "Eicar-Test-Signature.UNOFFICIAL"

// eicarNDB matches EICAR's bytes anywhere in any file (an .ndb line:
// name, target type 0 = any, offset * = anywhere, the bytes in hex).
var eicarNDB = "Eicar-Test-Signature:0:*:" + hex.EncodeToString([]byte(EICAR)) + "\n"

const startTimeout = 60 * time.Second

// Options change the daemon's configuration.
type Options struct {
	// Unix listens on a Unix socket instead of TCP.
	Unix bool
	// StreamMaxLength is clamd's INSTREAM limit ("" leaves clamd's
	// default, 100M).
	StreamMaxLength string
}

// Server is one clamd owned by a test.
type Server struct {
	tb   testing.TB
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
	mu   sync.Mutex
	// Addr is the scan.clamd value: "tcp:127.0.0.1:PORT" or "unix:/path".
	Addr string
}

// Start starts clamd and waits until it answers PING.
func Start(tb testing.TB, o Options) *Server {
	tb.Helper()
	bin, err := exec.LookPath("clamd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/clamd"); serr != nil {
			tb.Fatalf("clamd not installed (make deps installs Debian's clamav-daemon): %v", err)
		}
		bin = "/usr/sbin/clamd"
	}
	dir := tb.TempDir()
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(db, "eicar.ndb"), []byte(eicarNDB), 0o600); err != nil {
		tb.Fatal(err)
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "Foreground yes\nDatabaseDirectory %s\nLogFile %s\nLogVerbose yes\n", db, filepath.Join(dir, "clamd.log"))
	fmt.Fprintf(&conf, "SelfCheck 0\nMaxThreads 4\n")
	s := &Server{tb: tb, log: &bytes.Buffer{}}
	if o.Unix {
		// Socket paths are short (108 bytes): a directory of its own
		// under the system's temporary directory.
		sd, err := os.MkdirTemp("", "clamd")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(sd) })
		sock := filepath.Join(sd, "clamd.sock")
		fmt.Fprintf(&conf, "LocalSocket %s\n", sock)
		s.Addr = "unix:" + sock
	} else {
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(&conf, "TCPSocket %d\nTCPAddr 127.0.0.1\n", port)
		s.Addr = fmt.Sprintf("tcp:127.0.0.1:%d", port)
	}
	if o.StreamMaxLength != "" {
		fmt.Fprintf(&conf, "StreamMaxLength %s\n", o.StreamMaxLength)
	}
	confPath := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	s.cmd = exec.Command(bin, "-c", confPath)
	s.cmd.Stdout, s.cmd.Stderr = &lockedWriter{s: s}, &lockedWriter{s: s}
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("clamdtest: start clamd: %v", err)
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	tb.Cleanup(s.Stop)

	c, err := scan.New(s.Addr, 2*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(startTimeout)
	for {
		err := c.Ping(context.Background())
		if err == nil {
			return s
		}
		select {
		case <-s.done:
			tb.Fatalf("clamdtest: clamd exited: %s", s.Log())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("clamdtest: clamd did not answer PING within %s: %v\n%s", startTimeout, err, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops clamd and waits for it to exit; the address refuses
// connections from then on.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.Thaw()
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// Freeze stops the clamd process (SIGSTOP) until the test ends or Thaw:
// connections still open (the kernel accepts them), but nothing answers.
func (s *Server) Freeze() {
	s.cmd.Process.Signal(syscall.SIGSTOP)
	s.tb.Cleanup(s.Thaw)
}

// Thaw lets a frozen clamd run again.
func (s *Server) Thaw() { s.cmd.Process.Signal(syscall.SIGCONT) }

// Log is what clamd printed.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

type lockedWriter struct{ s *Server }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.log.Write(p)
}

// freePort is never one another helper of this test binary handed out.
func freePort() (int, error) { return testsupport.FreePort() }
