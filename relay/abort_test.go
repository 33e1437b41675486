package relay

import (
	"context"
	"testing"
	"time"

	"github.com/attachgate/attachgate/smtptest"
)

// TestCloseDuringDataDeliversNothing: when the message cannot be finished
// (the rewrite fails half way), the caller closes the session without
// ending DATA. A QUIT then would first end the message with "." and the
// next hop would accept the part written so far; the connection is
// dropped instead and the next hop gets nothing.
func TestCloseDuringDataDeliversNothing(t *testing.T) {
	srv := smtptest.NewServer(t, smtptest.Behaviour{})
	s, err := New(srv.Addr, "gw.test", 10*time.Second, TLSNone, nil).Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Mail("a@corp.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Rcpt("b@example.net", nil); err != nil {
		t.Fatal(err)
	}
	w, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("Subject: half\r\n\r\nthe first half\r\n")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// The server sees the connection end; give it time to (wrongly)
	// store a message before looking.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && len(srv.Messages()) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("next hop accepted %d cut messages: %q", n, srv.Messages()[0].Data)
	}
}
