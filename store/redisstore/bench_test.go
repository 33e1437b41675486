package redisstore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/attachgate/attachgate/redistest"
	"github.com/attachgate/attachgate/store"
)

// The benchmarks compare the two backends on the calls every mail and
// every download make, from concurrent goroutines as a busy instance does:
//
//	go test -run '^$' -bench . -benchmem ./store/redisstore/
//
// SQLite commits with synchronous=FULL (an fsync per message), Redis here
// appends to its AOF with the default appendfsync everysec, over loopback.

func benchBackends(b *testing.B, fn func(b *testing.B, s store.Store)) {
	b.Run("sqlite", func(b *testing.B) {
		s, err := store.OpenSQLite(filepath.Join(b.TempDir(), "attachgate.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		fn(b, s)
	})
	b.Run("redis", func(b *testing.B) {
		s := openStore(b, redistest.Start(b))
		defer s.Close()
		fn(b, s)
	})
}

// BenchmarkCreateMessage stores one message with one file and its link,
// what the SMTP side does per mail with an attachment.
func BenchmarkCreateMessage(b *testing.B) {
	benchBackends(b, func(b *testing.B, s store.Store) {
		ctx := context.Background()
		now := time.Now()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m, files, links := oneFileMessage(b, now, 0)
				if err := s.CreateMessage(ctx, m, files, links); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// BenchmarkCountDownload counts downloads of one unlimited link, the
// atomic check-and-increment behind every download button.
func BenchmarkCountDownload(b *testing.B) {
	benchBackends(b, func(b *testing.B, s store.Store) {
		ctx := context.Background()
		now := time.Now()
		m, files, links := oneFileMessage(b, now, 0)
		if err := s.CreateMessage(ctx, m, files, links); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.CountDownload(ctx, links[0].ID, now); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "downloads/s")
	})
}

// BenchmarkLinkByTokenHash is the landing page's lookup.
func BenchmarkLinkByTokenHash(b *testing.B) {
	benchBackends(b, func(b *testing.B, s store.Store) {
		ctx := context.Background()
		m, files, links := oneFileMessage(b, time.Now(), 0)
		if err := s.CreateMessage(ctx, m, files, links); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.LinkByTokenHash(ctx, links[0].TokenHash); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
	})
}
