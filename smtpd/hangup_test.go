package smtpd

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/testsupport"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestClientHangupMidDataIsNotAnError: a client that goes away in the
// middle of DATA is a normal event for a mail server (a laptop lid closed,
// a client timeout): it is logged at INFO, recorded as mail.deferred, and
// never as an ERROR that pages the admin.
func TestClientHangupMidDataIsNotAnError(t *testing.T) {
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withOptions(func(o *Options) {
		o.Logger = log
		o.Pipeline.Logger = log
	}))
	conn, err := net.Dial("tcp", gw.smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	expect := func(code string) {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %s: %v", code, err)
			}
			if strings.HasPrefix(line, code+" ") {
				return
			}
			if !strings.HasPrefix(line, code+"-") {
				t.Fatalf("got %q, want %s", line, code)
			}
		}
	}
	expect("220")
	fmt.Fprintf(conn, "EHLO laptop\r\n")
	expect("250")
	fmt.Fprintf(conn, "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
	expect("250")
	expect("250")
	expect("354")
	fmt.Fprintf(conn, "Subject: half\r\n\r\nthe first half of the body\r\n")
	conn.Close()

	testsupport.WaitFor(t, "the outcome of the abandoned message", func() bool {
		return len(gw.events(audit.TypeMailDeferred)) == 1
	})
	time.Sleep(100 * time.Millisecond) // let the session finish logging
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("client hang-up logged as an error: %s", line)
		}
	}
	if !strings.Contains(logs.String(), "client went away") {
		t.Errorf("no INFO line saying the client went away:\n%s", logs.String())
	}
	if n := len(hop.Messages()); n != 0 {
		t.Errorf("next hop got %d messages", n)
	}
}
