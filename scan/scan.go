// Package scan owns the clamd client: attachments stream to ClamAV's
// daemon with its zINSTREAM command while they are stored, in chunks from
// one fixed buffer, and the daemon's verdict (clean, infected with a
// signature name, or an error) comes back when the stream ends.
//
// The protocol (clamd(8)): the command "zINSTREAM\0", then chunks, each a
// 4-byte unsigned length in network byte order followed by that many bytes,
// then a zero-length chunk. clamd answers one NUL-terminated line:
// "stream: OK", "stream: NAME FOUND" or "... ERROR". Past clamd's
// StreamMaxLength it answers "INSTREAM size limit exceeded. ERROR" and
// closes the connection; that is an error here, never a clean verdict.
package scan

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// ChunkSize is the size of the one buffer a Stream fills before it sends
// a chunk: the memory a scan holds, whatever the file's size.
const ChunkSize = 64 << 10

// DefaultTimeout is scan.timeout's default.
const DefaultTimeout = 60 * time.Second

// maxReply bounds clamd's reply line.
const maxReply = 4096

// Client talks to one clamd. It is safe for concurrent use; every scan is
// its own connection.
type Client struct {
	network, address string
	// Timeout bounds each step of a scan: connecting, sending one chunk,
	// and the verdict after the last chunk. The file itself may take as
	// long as its sender takes to send it.
	Timeout time.Duration
}

// ParseAddress checks a scan.clamd value: "tcp:HOST:PORT" or
// "unix:/path/to/clamd.ctl". It returns the network and address to dial.
func ParseAddress(s string) (network, address string, err error) {
	kind, rest, ok := strings.Cut(s, ":")
	switch {
	case !ok || rest == "":
		return "", "", fmt.Errorf("%q: want tcp:HOST:PORT or unix:/path/to/socket", s)
	case kind == "tcp":
		host, port, err := net.SplitHostPort(rest)
		if err != nil || host == "" || port == "" {
			return "", "", fmt.Errorf("%q: want tcp:HOST:PORT, e.g. tcp:127.0.0.1:3310", s)
		}
		return "tcp", rest, nil
	case kind == "unix":
		if !strings.HasPrefix(rest, "/") {
			return "", "", fmt.Errorf("%q: want an absolute socket path, e.g. unix:/run/clamav/clamd.ctl", s)
		}
		return "unix", rest, nil
	}
	return "", "", fmt.Errorf("%q: want tcp:HOST:PORT or unix:/path/to/socket", s)
}

// New returns a client for addr (ParseAddress syntax); timeout <= 0 means
// DefaultTimeout.
func New(addr string, timeout time.Duration) (*Client, error) {
	network, address, err := ParseAddress(addr)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Client{network: network, address: address, Timeout: timeout}, nil
}

// String is the configured address, e.g. "tcp:127.0.0.1:3310".
func (c *Client) String() string { return c.network + ":" + c.address }

// Result is clamd's verdict on one stream.
type Result struct {
	// Infected is true when clamd found a signature; Signature names it.
	Infected  bool
	Signature string
	// Size is how many bytes went to clamd.
	Size int64
}

// Error is a scan that gave no verdict: clamd unreachable, too slow, or
// answering ERROR (StreamMaxLength among others).
type Error struct {
	Op  string // dial, send, reply
	Err error
}

func (e *Error) Error() string { return "clamd " + e.Op + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// ErrSizeLimit is clamd's StreamMaxLength refusal.
var ErrSizeLimit = errors.New("INSTREAM size limit exceeded (raise StreamMaxLength in clamd.conf)")

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: c.Timeout}
	conn, err := d.DialContext(ctx, c.network, c.address)
	if err != nil {
		return nil, &Error{Op: "dial", Err: err}
	}
	return conn, nil
}

// Ping asks clamd for PONG.
func (c *Client) Ping(ctx context.Context) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(c.Timeout))
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return &Error{Op: "send", Err: err}
	}
	line, err := readReply(conn)
	if err != nil {
		return &Error{Op: "reply", Err: err}
	}
	if line != "PONG" {
		return &Error{Op: "reply", Err: fmt.Errorf("PING answered %q", line)}
	}
	return nil
}

// Stream is one scan in progress: write the file to it, then call Result.
// Write never fails: once the scan has failed (clamd gone, too slow, size
// limit), the rest is discarded and Result reports the error, so a Stream
// can sit in a tee beside the writer that matters. Not safe for concurrent
// use.
type Stream struct {
	c       *Client
	conn    net.Conn
	buf     []byte // fixed: ChunkSize plus the 4-byte length
	n       int    // bytes of data in buf[4:]
	size    int64
	err     error
	verdict string // signature found; "" clean
	done    bool
}

// Start opens a scan. An unreachable clamd does not fail Start: the
// Stream's Result reports it, after the file was written.
func (c *Client) Start(ctx context.Context) *Stream {
	s := &Stream{c: c, buf: make([]byte, 4+ChunkSize)}
	conn, err := c.dial(ctx)
	if err != nil {
		s.err = err
		return s
	}
	s.conn = conn
	conn.SetWriteDeadline(time.Now().Add(c.Timeout))
	if _, err := conn.Write([]byte("zINSTREAM\x00")); err != nil {
		s.fail("send", err)
	}
	return s
}

// Write sends p to clamd in chunks of at most ChunkSize. It always
// returns len(p), nil.
func (s *Stream) Write(p []byte) (int, error) {
	total := len(p)
	s.size += int64(total)
	for len(p) > 0 && s.err == nil {
		k := copy(s.buf[4+s.n:], p)
		s.n += k
		p = p[k:]
		if s.n == ChunkSize {
			s.flush()
		}
	}
	return total, nil
}

// flush sends the buffered data as one chunk.
func (s *Stream) flush() {
	if s.n == 0 || s.err != nil {
		return
	}
	binary.BigEndian.PutUint32(s.buf[:4], uint32(s.n))
	s.conn.SetWriteDeadline(time.Now().Add(s.c.Timeout))
	_, err := s.conn.Write(s.buf[:4+s.n])
	s.n = 0
	if err != nil {
		s.fail("send", err)
	}
}

// fail records the first error. A write refused because clamd closed the
// stream usually has clamd's reason waiting: the size limit.
func (s *Stream) fail(op string, err error) {
	if s.err != nil {
		return
	}
	s.err = &Error{Op: op, Err: err}
	if op == "send" && s.conn != nil {
		s.conn.SetReadDeadline(time.Now().Add(time.Second))
		if line, rerr := readReply(s.conn); rerr == nil && line != "" {
			s.err = replyError(line)
		}
	}
	if s.conn != nil {
		s.conn.Close()
	}
}

// Result ends the stream and returns clamd's verdict. Calling it again
// returns the same.
func (s *Stream) Result() (Result, error) {
	res := Result{Size: s.size}
	if !s.done {
		s.done = true
		s.flush()
		if s.err == nil {
			s.conn.SetDeadline(time.Now().Add(s.c.Timeout))
			if _, err := s.conn.Write([]byte{0, 0, 0, 0}); err != nil {
				s.fail("send", err)
			}
		}
		if s.err == nil {
			line, err := readReply(s.conn)
			s.conn.Close()
			if err != nil {
				s.err = &Error{Op: "reply", Err: err}
			} else {
				s.verdict, s.err = parseReply(line)
			}
		}
		s.buf = nil
	}
	if s.err != nil {
		return res, s.err
	}
	res.Infected, res.Signature = s.verdict != "", s.verdict
	return res, nil
}

// Close abandons a stream whose Result is not wanted.
func (s *Stream) Close() {
	if !s.done {
		s.done = true
		if s.conn != nil {
			s.conn.Close()
		}
		if s.err == nil {
			s.err = &Error{Op: "send", Err: errors.New("abandoned")}
		}
	}
}

// parseReply reads "stream: OK", "stream: NAME FOUND", "... ERROR".
func parseReply(line string) (signature string, err error) {
	rest := line
	if i := strings.Index(line, ": "); i >= 0 {
		rest = line[i+2:]
	}
	switch {
	case rest == "OK":
		return "", nil
	case strings.HasSuffix(rest, " FOUND"):
		sig := strings.TrimSpace(strings.TrimSuffix(rest, " FOUND"))
		if sig == "" {
			sig = "unknown"
		}
		return sig, nil
	}
	return "", replyError(line)
}

func replyError(line string) error {
	if strings.Contains(line, "size limit exceeded") {
		return &Error{Op: "reply", Err: ErrSizeLimit}
	}
	return &Error{Op: "reply", Err: fmt.Errorf("%q", line)}
}

// readReply reads one reply terminated by NUL (z commands) or newline, or
// ended by clamd closing the connection.
func readReply(r io.Reader) (string, error) {
	br := bufio.NewReaderSize(io.LimitReader(r, maxReply), 512)
	var out bytes.Buffer
	for {
		b, err := br.ReadByte()
		if err != nil {
			if out.Len() > 0 && errors.Is(err, io.EOF) {
				break
			}
			if errors.Is(err, io.EOF) {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
		if b == 0 || b == '\n' {
			break
		}
		out.WriteByte(b)
	}
	return strings.TrimSpace(out.String()), nil
}
