package mailpart

import (
	"bytes"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

// bigMessage is a mail with a short text body and a 10 MiB PDF attachment,
// base64 in 76-character lines, built once.
var bigMessage = sync.OnceValue(func() []byte {
	const size = 10 << 20
	payload := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(payload)

	var b bytes.Buffer
	b.WriteString(crlfText(`From: a@example.com
To: b@example.net
Subject: big
Message-ID: <big@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="big-b"

--big-b
Content-Type: text/plain; charset=utf-8

Here is the file.
--big-b
Content-Type: application/pdf; name="big.pdf"
Content-Disposition: attachment; filename="big.pdf"
Content-Transfer-Encoding: base64

`))
	enc := base64.StdEncoding.EncodeToString(payload)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	b.WriteString("\r\n--big-b--\r\n")
	return b.Bytes()
})

func BenchmarkWalk10MiB(b *testing.B) {
	msg := bigMessage()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		var n int64
		_, err := Walk(bytes.NewReader(msg), Limits{}, func(p *Part, body io.Reader) error {
			c, err := io.Copy(io.Discard, body)
			n += c
			return err
		})
		if err != nil || n < 10<<20 {
			b.Fatalf("Walk: %v, %d bytes", err, n)
		}
	}
}

func BenchmarkRewrite10MiB(b *testing.B) {
	msg := bigMessage()
	n := testNotice("big.pdf")
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Rewrite(bytes.NewReader(msg), io.Discard, Limits{}, map[string]bool{"1.2": true}, n); err != nil {
			b.Fatal(err)
		}
	}
}

// Keeping the attachment copies its 10 MiB raw; this measures the copy path.
func BenchmarkRewrite10MiBKeep(b *testing.B) {
	msg := bigMessage()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Rewrite(bytes.NewReader(msg), io.Discard, Limits{}, nil, Notice{}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStreamingMemoryFlat checks that Walk and Rewrite of the 10 MiB
// message allocate far less than the message: bodies stream.
func TestStreamingMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 10 MiB message")
	}
	msg := bigMessage()
	allocated := func(run func()) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		run()
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	walk := allocated(func() {
		_, err := Walk(bytes.NewReader(msg), Limits{}, func(p *Part, body io.Reader) error {
			_, err := io.Copy(io.Discard, body)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	rewrite := allocated(func() {
		if err := Rewrite(bytes.NewReader(msg), io.Discard, Limits{}, map[string]bool{"1.2": true}, testNotice("big.pdf")); err != nil {
			t.Fatal(err)
		}
	})
	const budget = 2 << 20
	if walk > budget || rewrite > budget {
		t.Errorf("allocated %d bytes in Walk and %d in Rewrite of a %d-byte message; bodies should stream", walk, rewrite, len(msg))
	}
}
