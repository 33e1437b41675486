package mailpart

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// sizedMessage is a mail with a text body and one base64 attachment of
// size random bytes, like bigMessage but of any size.
func sizedMessage(size int) []byte {
	payload := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{2})
	_, _ = rng.Read(payload)
	var b bytes.Buffer
	b.WriteString(crlfText(`From: a@example.com
To: b@example.net
Subject: sized
Message-ID: <sized@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="sized-b"

--sized-b
Content-Type: text/plain; charset=utf-8

Here is the file.
--sized-b
Content-Type: application/pdf; name="sized.pdf"
Content-Disposition: attachment; filename="sized.pdf"
Content-Transfer-Encoding: base64

`))
	enc := base64.StdEncoding.EncodeToString(payload)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	b.WriteString("\r\n--sized-b--\r\n")
	return b.Bytes()
}

var allocSizes = []int{1 << 20, 10 << 20}

// walkDecoded walks msg and reads every body (attachments decoded).
func walkDecoded(msg []byte) error {
	_, err := Walk(bytes.NewReader(msg), Limits{}, func(p *Part, body io.Reader) error {
		_, err := io.Copy(io.Discard, body)
		return err
	})
	return err
}

// BenchmarkWalkSizes and BenchmarkRewriteSizes run the walk (decoding the
// attachment, as the pipeline's store step does) and the rewrite (taking
// the attachment out, adding the notice) over a 1 MiB and a 10 MiB
// attachment: MB/s of message, and allocs/op that should not differ.
func BenchmarkWalkSizes(b *testing.B) {
	for _, size := range allocSizes {
		msg := sizedMessage(size)
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if err := walkDecoded(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRewriteSizes(b *testing.B) {
	n := testNotice("sized.pdf")
	for _, size := range allocSizes {
		msg := sizedMessage(size)
		b.Run(fmt.Sprintf("%dMiB", size>>20), func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Rewrite(bytes.NewReader(msg), io.Discard, Limits{}, map[string]bool{"1.2": true}, n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestAllocsIndependentOfSize checks, by allocation count (not time), that
// walking and rewriting a message with a 10 MiB attachment allocates about
// as often as with a 1 MiB one: bodies stream through fixed buffers.
func TestAllocsIndependentOfSize(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 11 MiB of messages")
	}
	n := testNotice("sized.pdf")
	ops := []struct {
		name string
		run  func(msg []byte) error
	}{
		{"Walk", walkDecoded},
		{"Rewrite", func(msg []byte) error {
			return Rewrite(bytes.NewReader(msg), io.Discard, Limits{}, map[string]bool{"1.2": true}, n)
		}},
		{"RewriteKeep", func(msg []byte) error {
			return Rewrite(bytes.NewReader(msg), io.Discard, Limits{}, nil, Notice{})
		}},
	}
	msgs := map[int][]byte{}
	for _, size := range allocSizes {
		msgs[size] = sizedMessage(size)
	}
	for _, op := range ops {
		allocs := map[int]float64{}
		for _, size := range allocSizes {
			msg := msgs[size]
			allocs[size] = testing.AllocsPerRun(3, func() {
				if err := op.run(msg); err != nil {
					t.Fatal(err)
				}
			})
		}
		small, big := allocs[allocSizes[0]], allocs[allocSizes[1]]
		t.Logf("%s: %.0f allocs for 1 MiB, %.0f for 10 MiB", op.name, small, big)
		if big > 1.5*small+20 {
			t.Errorf("%s: %.0f allocations for a 10 MiB attachment but %.0f for 1 MiB: allocations grow with the body", op.name, big, small)
		}
	}
}
