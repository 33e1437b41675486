package pipeline

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/textproto"
	"path/filepath"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/relay"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

// benchHop is a next hop that accepts everything and keeps nothing. The
// embedded (nil) relay.Session keeps it a relay.Session when that
// interface grows; Process calls only the methods defined here.
type benchHop struct {
	relay.Session
	n int64
}

func (h *benchHop) Mail(string, *smtp.MailOptions) error { return nil }
func (h *benchHop) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (h *benchHop) Data() (relay.DataWriter, error)      { return benchData{h}, nil }
func (h *benchHop) Reset() error                         { return nil }
func (h *benchHop) Noop() error                          { return nil }
func (h *benchHop) EightBitMIME() bool                   { return true }
func (h *benchHop) Close() error                         { return nil }

type benchData struct{ h *benchHop }

func (d benchData) Write(p []byte) (int, error) { d.h.n += int64(len(p)); return len(p), nil }
func (d benchData) Close() (string, error)      { return "2.0.0 Ok: queued", nil }

// benchPipeline is the pipeline over a real vault, SQLite store and audit
// log in a temp dir (audit and store as the daemon opens them: WAL,
// synchronous=FULL).
func benchPipeline(tb testing.TB) *Pipeline {
	tb.Helper()
	dir := tb.TempDir()
	ring, err := vault.OpenKeyRing(filepath.Join(dir, "keys"))
	if err != nil {
		tb.Fatal(err)
	}
	blobs, err := vault.NewBlobStore(filepath.Join(dir, "blobs"), ring)
	if err != nil {
		tb.Fatal(err)
	}
	st, err := store.OpenSQLite(filepath.Join(dir, "attachgate.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	al, err := audit.NewSQLite(st.DB(), audit.Options{Location: time.UTC})
	if err != nil {
		tb.Fatal(err)
	}
	return &Pipeline{Hostname: "gw.bench", SpoolDir: filepath.Join(dir, "spool"), Store: st, Blobs: blobs,
		Audit: al, BaseURL: "https://files.example.com", Expiry: time.Hour, Language: "both",
		Location: time.UTC, Logger: slog.New(slog.DiscardHandler)}
}

// benchMail returns a message with one base64 attachment of size random
// bytes, or a plain text mail of about 5 KiB when size is 0.
func benchMail(size int) []byte {
	var b bytes.Buffer
	if size == 0 {
		b.WriteString("From: a@example.com\r\nTo: b@example.net\r\nSubject: plain\r\nMessage-ID: <plain@example.com>\r\n" +
			"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
		for b.Len() < 5<<10 {
			b.WriteString("The quick brown fox jumps over the lazy dog; a plain mail with nothing to link.\r\n")
		}
		return b.Bytes()
	}
	payload := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{5})
	_, _ = rng.Read(payload)
	b.WriteString("From: a@example.com\r\nTo: b@example.net\r\nSubject: file\r\nMessage-ID: <file@example.com>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHere is the file.\r\n" +
		"--b\r\nContent-Type: application/pdf; name=\"f.pdf\"\r\nContent-Disposition: attachment; filename=\"f.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(payload)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--b--\r\n")
	return b.Bytes()
}

var pipelineSizes = []struct {
	name string
	size int
}{{"5KiBPlain", 0}, {"1MiB", 1 << 20}, {"10MiB", 10 << 20}}

// BenchmarkPipeline runs Pipeline.Process (spool, walk, store, audit,
// rewrite, relay to a discarding hop) without SMTP parsing or a network:
// the gateway's own cost per message. Compare with the relay rows of
// BENCH.md to see what go-smtp's DATA reader and the sockets add.
func BenchmarkPipeline(b *testing.B) {
	env := Envelope{From: "a@example.com", To: []string{"b@example.net"}, ClientAddr: "127.0.0.1", Helo: "client"}
	for _, c := range pipelineSizes {
		b.Run(c.name, func(b *testing.B) {
			p := benchPipeline(b)
			msg := benchMail(c.size)
			hop := &benchHop{}
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Process(context.Background(), env, bytes.NewReader(msg), hop); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkSMTPDataReader measures go-smtp's server-side DATA reader on
// its own: a go-smtp server on loopback whose Data only copies to
// io.Discard, fed by a raw client that writes the (dot-safe) message with
// one Write. It is the floor of what receiving a message costs before the
// pipeline sees a byte.
func BenchmarkSMTPDataReader(b *testing.B) {
	for _, c := range pipelineSizes[1:] {
		b.Run(c.name, func(b *testing.B) {
			msg := benchMail(c.size)
			srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return discardSession{}, nil }))
			srv.Domain = "bench"
			srv.MaxMessageBytes = 64 << 20
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go srv.Serve(l)
			defer srv.Close()
			conn, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			tc := textproto.NewConn(conn)
			expect := func(code int) {
				if _, _, err := tc.ReadResponse(code); err != nil {
					b.Fatal(err)
				}
			}
			cmd := func(code int, line string) {
				if err := tc.PrintfLine("%s", line); err != nil {
					b.Fatal(err)
				}
				expect(code)
			}
			expect(220)
			cmd(250, "EHLO client")
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				cmd(250, "MAIL FROM:<a@example.com>")
				cmd(250, "RCPT TO:<b@example.net>")
				cmd(354, "DATA")
				if _, err := conn.Write(msg); err != nil {
					b.Fatal(err)
				}
				cmd(250, ".")
			}
		})
	}
}

type discardSession struct{}

func (discardSession) Mail(string, *smtp.MailOptions) error { return nil }
func (discardSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (discardSession) Data(r io.Reader) error {
	_, err := io.CopyBuffer(io.Discard, r, make([]byte, copyBufferSize))
	return err
}
func (discardSession) Reset()        {}
func (discardSession) Logout() error { return nil }

// TestPipelineAllocsIndependentOfSize checks by allocation count (not
// time) that the whole pipeline allocates a bounded number of times per
// 64 KiB of message on top of a constant. Today age's DecryptReaderAt
// allocates per chunk read (see vault's TestReadAllocsBounded), and the
// pipeline reads the spool twice; everything else is flat.
func TestPipelineAllocsIndependentOfSize(t *testing.T) {
	if testing.Short() {
		t.Skip("relays 11 MiB")
	}
	p := benchPipeline(t)
	env := Envelope{From: "a@example.com", To: []string{"b@example.net"}, ClientAddr: "127.0.0.1", Helo: "client"}
	allocs := map[int]float64{}
	chunks := map[int]float64{}
	for _, c := range pipelineSizes[1:] {
		msg := benchMail(c.size)
		chunks[c.size] = float64(len(msg)) / (64 << 10)
		allocs[c.size] = testing.AllocsPerRun(2, func() {
			if _, err := p.Process(context.Background(), env, bytes.NewReader(msg), &benchHop{}); err != nil {
				t.Fatal(err)
			}
		})
	}
	small, big := allocs[1<<20], allocs[10<<20]
	perChunk := (big - small) / (chunks[10<<20] - chunks[1<<20])
	t.Logf("pipeline allocs: %.0f for 1 MiB, %.0f for 10 MiB (%.2f per extra 64 KiB of message)", small, big, perChunk)
	if perChunk > 8 {
		t.Errorf("pipeline allocations grow by %.1f per 64 KiB of message (1 MiB: %.0f, 10 MiB: %.0f), want at most 8", perChunk, small, big)
	}
}
