package scan_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/scan"
	"github.com/attachgate/attachgate/scan/clamdtest"
)

func TestParseAddress(t *testing.T) {
	for _, tc := range []struct {
		in, network, address string
		ok                   bool
	}{
		{"tcp:127.0.0.1:3310", "tcp", "127.0.0.1:3310", true},
		{"tcp:[::1]:3310", "tcp", "[::1]:3310", true},
		{"unix:/run/clamav/clamd.ctl", "unix", "/run/clamav/clamd.ctl", true},
		{"127.0.0.1:3310", "", "", false},
		{"tcp:127.0.0.1", "", "", false},
		{"tcp::3310", "", "", false},
		{"unix:clamd.ctl", "", "", false},
		{"unix:", "", "", false},
		{"udp:127.0.0.1:3310", "", "", false},
		{"", "", "", false},
	} {
		n, a, err := scan.ParseAddress(tc.in)
		if (err == nil) != tc.ok || n != tc.network || a != tc.address {
			t.Errorf("ParseAddress(%q) = %q, %q, %v", tc.in, n, a, err)
		}
	}
}

func scanBytes(t *testing.T, c *scan.Client, data []byte) (scan.Result, error) {
	t.Helper()
	s := c.Start(context.Background())
	// Small, uneven writes: the stream must gather them into chunks.
	for len(data) > 0 {
		k := min(len(data), 1000)
		if n, err := s.Write(data[:k]); n != k || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		data = data[k:]
	}
	return s.Result()
}

func TestVerdicts(t *testing.T) {
	for _, unix := range []bool{false, true} {
		name := "tcp"
		if unix {
			name = "unix"
		}
		t.Run(name, func(t *testing.T) {
			srv := clamdtest.Start(t, clamdtest.Options{Unix: unix})
			c, err := scan.New(srv.Addr, 0)
			if err != nil {
				t.Fatal(err)
			}
			if c.Timeout != scan.DefaultTimeout {
				t.Errorf("default timeout %v", c.Timeout)
			}
			res, err := scanBytes(t, c, []byte(clamdtest.EICAR))
			if err != nil || !res.Infected || res.Signature != clamdtest.Signature {
				t.Fatalf("EICAR: %+v, %v", res, err)
			}
			clean := []byte(strings.Repeat("just a report\r\n", 10000))
			res, err = scanBytes(t, c, clean)
			if err != nil || res.Infected || res.Size != int64(len(clean)) {
				t.Fatalf("clean: %+v, %v", res, err)
			}
			res, err = scanBytes(t, c, nil)
			if err != nil || res.Infected {
				t.Fatalf("empty: %+v, %v", res, err)
			}
		})
	}
}

// TestLargeStreamBoundedMemory streams 20 MiB, EICAR at its start, through
// one Stream: clamd receives all of it in chunks (it finds the signature
// and answers, rather than refusing an over-long chunk), and the client
// allocates its one buffer, not the file.
func TestLargeStreamBoundedMemory(t *testing.T) {
	srv := clamdtest.Start(t, clamdtest.Options{})
	c, _ := scan.New(srv.Addr, 0)
	const size = 20 << 20
	block := make([]byte, 256<<10)
	rand.Read(block)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := c.Start(context.Background())
	s.Write([]byte(clamdtest.EICAR))
	for sent := 0; sent < size; sent += len(block) {
		s.Write(block)
	}
	res, err := s.Result()
	runtime.ReadMemStats(&after)
	if err != nil || !res.Infected || res.Size != size+int64(len(clamdtest.EICAR)) {
		t.Fatalf("20 MiB: %+v, %v", res, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("streaming 20 MiB allocated %d bytes; want the chunk buffer only", alloc)
	}
}

func TestStreamMaxLengthIsAnError(t *testing.T) {
	srv := clamdtest.Start(t, clamdtest.Options{StreamMaxLength: "1M"})
	c, _ := scan.New(srv.Addr, 0)
	data := make([]byte, 3<<20)
	res, err := scanBytes(t, c, data)
	if !errors.Is(err, scan.ErrSizeLimit) || res.Infected {
		t.Fatalf("over StreamMaxLength: %+v, %v; want ErrSizeLimit", res, err)
	}
}

func TestClamdDown(t *testing.T) {
	srv := clamdtest.Start(t, clamdtest.Options{})
	c, _ := scan.New(srv.Addr, 0)
	srv.Stop()
	s := c.Start(context.Background())
	if n, err := io.Copy(s, bytes.NewReader([]byte(clamdtest.EICAR))); err != nil || n != int64(len(clamdtest.EICAR)) {
		t.Fatalf("Write on a failed stream: %d, %v", n, err)
	}
	res, err := s.Result()
	var se *scan.Error
	if !errors.As(err, &se) || se.Op != "dial" || res.Infected {
		t.Fatalf("clamd stopped: %+v, %v", res, err)
	}
	if err := c.Ping(context.Background()); err == nil {
		t.Fatal("Ping of a stopped clamd succeeded")
	}
}

func TestClamdFrozenTimesOut(t *testing.T) {
	srv := clamdtest.Start(t, clamdtest.Options{})
	c, _ := scan.New(srv.Addr, 500*time.Millisecond)
	srv.Freeze()
	res, err := scanBytes(t, c, []byte(clamdtest.EICAR))
	var se *scan.Error
	if !errors.As(err, &se) || res.Infected {
		t.Fatalf("frozen clamd: %+v, %v; want a scan error", res, err)
	}
}

// BenchmarkStream20MiB streams 20 MiB to a real clamd per iteration;
// B/op shows the client's memory does not grow with the file.
func BenchmarkStream20MiB(b *testing.B) {
	srv := clamdtest.Start(b, clamdtest.Options{})
	c, _ := scan.New(srv.Addr, 5*time.Minute)
	block := make([]byte, 32<<10)
	rand.Read(block)
	b.SetBytes(20 << 20)
	b.ReportAllocs()
	for b.Loop() {
		s := c.Start(context.Background())
		for sent := 0; sent < 20<<20; sent += len(block) {
			s.Write(block)
		}
		if res, err := s.Result(); err != nil || res.Infected {
			b.Fatalf("%+v, %v", res, err)
		}
	}
}
