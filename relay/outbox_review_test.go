package relay

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestOutboxHeaderLinesWithin998: the outbox writes the envelope as
// header fields of the .eml it makes; everything the gateway emits is CRLF
// with lines of at most 998 bytes (RFC 5322 2.1.1). X-Envelope-To joins
// every recipient on one line, so a message to 100 recipients (the default
// smtp.max_recipients) gives a header line of several KB that mail tools
// reading the outbox refuse or cut.
func TestOutboxHeaderLinesWithin998(t *testing.T) {
	dir := t.TempDir()
	s, err := (&Outbox{Dir: dir}).Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Mail("sender@corp.test", nil); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if err := s.Rcpt(fmt.Sprintf("recipient-number-%03d@partner.example", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := s.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("Subject: many\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != 1 {
		t.Fatalf("%d .eml files", len(files))
	}
	f, err := os.Open(files[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		if l := len(sc.Bytes()); l > 998 {
			t.Errorf("line %d of the outbox file is %d bytes long: %.60q...", n, l, sc.Text())
		}
	}
}
