package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
)

// testMessage is a generated MIME message on disk.
type testMessage struct {
	Path    string // the message file
	Size    int64  // bytes of the file
	Payload int64  // attachment bytes (0: no attachment)
	SHA256  string // hex SHA-256 of the attachment
	Name    string // attachment file name
}

// payloadReader is a reproducible stream of n incompressible bytes.
func payloadReader(n int64, seed byte) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{seed, 'a', 'g'}), n)
}

// writeAttachmentMessage writes a multipart/mixed mail with a short text
// body and one attachment of payload random bytes, base64 in 76-column
// lines, streaming (nothing of the size of the payload is held in memory).
// eol is "\n" for smtp-source -F (it appends CRLF to every line itself) or
// "\r\n" for our own client, which sends the file as it is. No line starts
// with '.', so the file needs no dot-stuffing.
func writeAttachmentMessage(path string, payload int64, seed byte, name, eol string) (testMessage, error) {
	f, err := os.Create(path)
	if err != nil {
		return testMessage{}, err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	head := strings.Join([]string{
		"From: Alice Bench <alice@example.com>",
		"To: Bob Bench <bob@example.net>",
		fmt.Sprintf("Subject: bench %s", name),
		"Date: Wed, 25 Nov 2026 10:00:00 +0900",
		fmt.Sprintf("Message-ID: <bench-%d-%d@example.com>", payload, seed),
		"MIME-Version: 1.0",
		`Content-Type: multipart/mixed; boundary="==bench-boundary=="`,
		"",
		"--==bench-boundary==",
		"Content-Type: text/plain; charset=utf-8",
		"Content-Transfer-Encoding: 7bit",
		"",
		"Hello Bob,",
		"",
		"the file is attached.",
		"",
		"Alice",
		"--==bench-boundary==",
		fmt.Sprintf(`Content-Type: application/pdf; name="%s"`, name),
		fmt.Sprintf(`Content-Disposition: attachment; filename="%s"`, name),
		"Content-Transfer-Encoding: base64",
		"",
		"",
	}, eol)
	if _, err := w.WriteString(head); err != nil {
		return testMessage{}, err
	}
	sum := sha256.New()
	src := io.TeeReader(payloadReader(payload, seed), sum)
	raw := make([]byte, 57*1024) // 57 raw bytes = one 76-column line
	line := make([]byte, 0, 80)
	for {
		n, err := io.ReadFull(src, raw)
		for off := 0; off < n; off += 57 {
			chunk := raw[off:min(off+57, n)]
			line = line[:base64.StdEncoding.EncodedLen(len(chunk))]
			base64.StdEncoding.Encode(line, chunk)
			line = append(line, eol...)
			if _, werr := w.Write(line); werr != nil {
				return testMessage{}, werr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return testMessage{}, err
		}
	}
	if _, err := w.WriteString("--==bench-boundary==--" + eol); err != nil {
		return testMessage{}, err
	}
	if err := w.Flush(); err != nil {
		return testMessage{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		return testMessage{}, err
	}
	return testMessage{Path: path, Size: fi.Size(), Payload: payload,
		SHA256: fmt.Sprintf("%x", sum.Sum(nil)), Name: name}, f.Close()
}

// writePlainMessage writes a text/plain mail of about size bytes with
// nothing to link.
func writePlainMessage(path string, size int, eol string) (testMessage, error) {
	var b strings.Builder
	for _, h := range []string{
		"From: Alice Bench <alice@example.com>",
		"To: Bob Bench <bob@example.net>",
		"Subject: bench plain",
		"Date: Wed, 25 Nov 2026 10:00:00 +0900",
		"Message-ID: <bench-plain@example.com>",
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=us-ascii",
		"Content-Transfer-Encoding: 7bit",
		"",
	} {
		b.WriteString(h + eol)
	}
	const text = "The quick brown fox jumps over the lazy dog; a plain mail with nothing to link."
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%04d %s%s", i, text, eol)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return testMessage{}, err
	}
	return testMessage{Path: path, Size: int64(b.Len())}, nil
}

// writePlainFile writes the raw payload (what nginx serves).
func writePlainFile(path string, size int64, seed byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, payloadReader(size, seed)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
