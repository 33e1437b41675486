package mailpart

import (
	"bytes"
	"io"
	"runtime"
	"sync"
	"testing"
)

// bigMessage is a mail with a short text body and a 10 MiB PDF attachment,
// base64 in 76-character lines, built once.
var bigMessage = sync.OnceValue(func() []byte { return sizedMessage(10 << 20) })

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
