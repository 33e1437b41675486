package smtpd

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/smtptest"
)

func TestHeaderTooLarge(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withOptions(func(o *Options) { o.Pipeline.Limits.MaxHeaderBytes = 8 << 10 }))
	var b strings.Builder
	for i := 0; i < 400; i++ {
		fmt.Fprintf(&b, "X-Filler-%d: %s\r\n", i, strings.Repeat("f", 60))
	}
	msg := b.String() + "Subject: big header\r\n\r\nbody\r\n"
	err := gw.send("a@example.com", []string{"b@example.net"}, []byte(msg))
	wantCode(t, "oversized header", err, 554, smtp.EnhancedCode{5, 6, 0})
}

func TestIdleClientIsDisconnected(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withOptions(func(o *Options) { o.ReadTimeout = 500 * time.Millisecond }))
	conn, err := net.Dial("tcp", gw.smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Slowloris: half a command, then nothing.
	conn.Write([]byte("EHLO sl"))
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	var out strings.Builder
	for {
		n, err := conn.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if !strings.Contains(out.String(), "421") {
		t.Fatalf("idle client got %q, want a 421 and a closed connection", out.String())
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestNoLeaksOnNextHopFailures runs many transactions that fail in every
// way the next hop can fail and checks that connections, descriptors and
// goroutines come back to where they were.
func TestNoLeaksOnNextHopFailures(t *testing.T) {
	refuse := &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "no"}
	behaviours := []smtptest.Behaviour{
		{DataReply: refuse},
		{DropAtDataEnd: true},
		{HangAtDataEnd: 2 * time.Second},
		{RejectRcpt: map[string]*smtp.SMTPError{"b@example.net": refuse}},
		{},
	}
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withHopTimeout(500*time.Millisecond))
	// Warm up: the first transaction opens pools (SQLite, HTTP).
	gw.send("a@example.com", []string{"b@example.net"}, []byte("Subject: warm\r\n\r\nx\r\n"))
	time.Sleep(100 * time.Millisecond)
	fds, goroutines := openFDs(t), runtime.NumGoroutine()

	for round := 0; round < 3; round++ {
		for _, b := range behaviours {
			hop.SetBehaviour(b)
			gw.send("a@example.com", []string{"b@example.net"}, mailWithAttachment("x", "body", "a.bin", []byte("payload")))
		}
	}
	hop.SetBehaviour(smtptest.Behaviour{})
	deadline := time.Now().Add(10 * time.Second)
	for {
		nowFDs, nowG, open := openFDs(t), runtime.NumGoroutine(), hop.OpenSessions()
		if nowFDs <= fds+2 && nowG <= goroutines+5 && open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leak: fds %d -> %d, goroutines %d -> %d, next-hop sessions open %d", fds, nowFDs, goroutines, nowG, open)
		}
		time.Sleep(100 * time.Millisecond)
	}
	gw.assertNoLeftovers()
}

// TestSlowUploadKeepsNextHopAlive: a client uploading slowly must not make
// the idle next-hop session time out; keep-alive NOOPs hold it open.
func TestSlowUploadKeepsNextHopAlive(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{}, smtptest.WithReadTimeout(time.Second))
	tests := []struct {
		name      string
		keepAlive time.Duration
		wantErr   bool
	}{
		{"with keep-alive", 200 * time.Millisecond, false},
		{"keep-alive too rare", time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := startGateway(t, hop.Addr, func(_ *Options, p *pipeline.Pipeline) { p.KeepAlive = tt.keepAlive })
			c := gw.dial()
			c.Mail("a@example.com", nil)
			c.Rcpt("b@example.net", nil)
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(w, "Subject: slow\r\n\r\n")
			for i := 0; i < 5; i++ { // 2.5 s of upload, the next hop's limit is 1 s
				fmt.Fprintf(w, "line %d\r\n", i)
				time.Sleep(500 * time.Millisecond)
			}
			err = w.Close()
			if tt.wantErr {
				wantCode(t, "slow upload without keep-alive", err, 451, smtp.EnhancedCode{4, 4, 2})
				return
			}
			if err != nil {
				t.Fatalf("slow upload: %v", err)
			}
		})
	}
}
