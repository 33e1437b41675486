package vault

import (
	"bytes"
	"io"
	"testing"

	"filippo.io/age"
)

const benchSize = 10 << 20

func BenchmarkPut(b *testing.B) {
	s, _, _ := newTestStore(b)
	data := randomBytes(benchSize, 1)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Put("bench", bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenRead(b *testing.B) {
	s, _, _ := newTestStore(b)
	info := putBytes(b, s, "bench", randomBytes(benchSize, 1))
	read := func(b *testing.B, copyTo func(dst io.Writer, blob *Blob) error) {
		b.SetBytes(benchSize)
		b.ReportAllocs()
		for b.Loop() {
			blob, err := s.Open("bench", info.KeyID)
			if err != nil {
				b.Fatal(err)
			}
			if err := copyTo(io.Discard, blob); err != nil {
				b.Fatal(err)
			}
			blob.Close()
		}
	}
	b.Run("WriteTo", func(b *testing.B) {
		read(b, func(dst io.Writer, blob *Blob) error { _, err := io.Copy(dst, blob); return err })
	})
	// http.ServeContent reads through an io.LimitReader with 32 KiB buffers.
	b.Run("Read32KiB", func(b *testing.B) {
		buf := make([]byte, 32<<10)
		read(b, func(dst io.Writer, blob *Blob) error {
			_, err := io.CopyBuffer(dst, io.LimitReader(blob, benchSize), buf)
			return err
		})
	})
}

// BenchmarkAgeEncryptCeiling is raw age encryption to io.Discard: the upper
// bound for Put.
func BenchmarkAgeEncryptCeiling(b *testing.B) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}
	data := randomBytes(benchSize, 1)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		w, err := age.Encrypt(io.Discard, id.Recipient())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
