package audit

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// anchoredOptions are the options attachgate opens its log with: a MAC
// key from the key ring and a head file outside the database.
func anchoredOptions(t *testing.T) Options {
	return Options{MACKey: AuditKey(testSecret), HeadPath: filepath.Join(t.TempDir(), "audit-head")}
}

// rehashFrom recomputes the hash of every event from seq on (and the
// prev_hash linking them) after edit changed one: what an attacker with
// write access to the database and the published hash scheme can do.
func rehashFrom(t *testing.T, seq int64, edit func(r *storedRow)) func(r *storedRow) bool {
	var prev string
	var recipients []string
	return func(r *storedRow) bool {
		if r.Seq >= seq {
			if r.Seq == seq {
				edit(r)
			} else {
				r.PrevHash = prev
			}
			var err error
			if recipients, err = r.decodeRecipients(recipients); err != nil {
				t.Fatal(err)
			}
			c := r.canonical(recipients)
			if r.Hash, err = canonicalHash(&c); err != nil {
				t.Fatal(err)
			}
		}
		prev = r.Hash
		return true
	}
}

// The attacks of issue 9 item 11 on both backends: each passed verify
// before events were MACed and the head anchored outside the database.
func TestVerifyDetectsTruncationAndRehashing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		fresh := func(t *testing.T) *openedLog {
			l := be.open(t, anchoredOptions(t))
			for i := range 6 {
				mustRecord(t, l, Event{Type: TypeDownloadOK, ClientAddr: "198.51.100.7", Size: int64(i)})
			}
			return l
		}
		verify := func(t *testing.T, l *openedLog) VerifyResult {
			t.Helper()
			res, err := l.Verify(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}

		t.Run("intact", func(t *testing.T) {
			res := verify(t, fresh(t))
			if !res.OK() || !res.Authenticated || res.MACs != 6 || res.HeadSeq != 6 {
				t.Fatalf("intact log: %v", res)
			}
		})
		t.Run("newest events deleted", func(t *testing.T) {
			l := fresh(t)
			l.raw.rewrite(t, func(r *storedRow) bool { return r.Seq <= 4 })
			res := verify(t, l)
			if res.Break == nil || res.Break.Kind != BreakTruncated || res.LostFrom != 5 || res.LostTo != 6 {
				t.Fatalf("truncated log: %v", res)
			}
			if !strings.Contains(res.String(), "events seq 5..6 lost") {
				t.Errorf("report does not name the lost range: %s", res)
			}
		})
		t.Run("all events deleted", func(t *testing.T) {
			l := fresh(t)
			l.raw.rewrite(t, func(*storedRow) bool { return false })
			res := verify(t, l)
			if res.Break == nil || res.Break.Kind != BreakTruncated || res.LostFrom != 1 || res.LostTo != 6 {
				t.Fatalf("emptied log: %v", res)
			}
		})
		t.Run("reanchored after loss", func(t *testing.T) {
			l := fresh(t)
			l.raw.rewrite(t, func(*storedRow) bool { return false })
			if rl, ok := l.testLog.(*RedisLog); ok {
				rl.client.FlushDB(context.Background())
			}
			var e Event
			var err error
			switch x := l.testLog.(type) {
			case *SQLiteLog:
				e, err = x.Reanchor(context.Background(), "test")
			case *RedisLog:
				e, err = x.Reanchor(context.Background(), "test")
			}
			if err != nil || e.Seq != 7 || !strings.Contains(e.Reason, "events seq 1..6") {
				t.Fatalf("reanchor: %+v %v", e, err)
			}
			next := mustRecord(t, l, Event{Type: TypeLinkViewed})
			if next.Seq != 8 {
				t.Errorf("next seq %d, want 8", next.Seq)
			}
			res := verify(t, l)
			if !res.OK() || !res.Authenticated || !res.Anchored || res.AnchorSeq != 6 {
				t.Fatalf("verify after reanchor: %v", res)
			}
		})
		t.Run("edited and rehashed", func(t *testing.T) {
			l := fresh(t)
			l.raw.rewrite(t, rehashFrom(t, 3, func(r *storedRow) { r.ClientAddr = "192.0.2.1" }))
			res := verify(t, l)
			if res.Break == nil || res.Break.Kind != BreakMACMismatch || res.Break.Seq != 3 {
				t.Fatalf("rehashed log: %v", res)
			}
		})
		t.Run("MACs stripped and rehashed", func(t *testing.T) {
			l := fresh(t)
			strip := rehashFrom(t, 3, func(r *storedRow) { r.ClientAddr = "192.0.2.1" })
			l.raw.rewrite(t, func(r *storedRow) bool { r.MAC = ""; return strip(r) })
			res := verify(t, l)
			if res.Break == nil || res.Break.Kind != BreakHeadMismatch || res.Break.Seq != 6 {
				t.Fatalf("stripped log: %v", res)
			}
		})
		t.Run("truncated and head forged", func(t *testing.T) {
			l := fresh(t)
			l.raw.rewrite(t, func(r *storedRow) bool { return r.Seq <= 4 })
			path := headPathOf(t, l)
			data, _ := json.Marshal(Head{Seq: 4, Hash: l.raw.events(t)[3].Hash, Sig: "00"})
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			res := verify(t, l)
			if res.Break == nil || res.Break.Kind != BreakHeadInvalid {
				t.Fatalf("forged head: %v", res)
			}
		})
		t.Run("head deleted", func(t *testing.T) {
			l := fresh(t)
			os.Remove(headPathOf(t, l))
			res := verify(t, l)
			if res.Break == nil || res.Break.Kind != BreakHeadInvalid {
				t.Fatalf("head deleted: %v", res)
			}
		})
		t.Run("no sequence number reused", func(t *testing.T) {
			l := fresh(t)
			l.raw.rewrite(t, func(r *storedRow) bool { return r.Seq <= 2 })
			if rl, ok := l.testLog.(*RedisLog); ok {
				// Redis restarted empty: the stream and the head key are gone.
				if err := rl.client.FlushDB(context.Background()).Err(); err != nil {
					t.Fatal(err)
				}
			}
			_, err := l.record(context.Background(), Event{Type: TypeLinkViewed})
			if !errors.Is(err, ErrBehindHead) {
				t.Fatalf("append after truncation: %v, want ErrBehindHead", err)
			}
			for _, e := range l.raw.events(t) {
				if e.Seq > 2 {
					t.Fatalf("seq %d given out again", e.Seq)
				}
			}
		})
	})
}

func headPathOf(t *testing.T, l *openedLog) string {
	t.Helper()
	var s *settings
	switch x := l.testLog.(type) {
	case *SQLiteLog:
		s = &x.settings
	case *RedisLog:
		s = &x.settings
	}
	if s == nil || s.head == nil {
		t.Fatal("log without head file")
	}
	return s.head.path
}

// Two writers (two instances, or the daemon and the CLI) never move the
// head back.
func TestHeadOnlyMovesForward(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit-head")
	w := &headWriter{path: path, key: AuditKey(testSecret)}
	for _, seq := range []int64{3, 7, 5} {
		if err := w.advance(seq, "h"+string(rune('0'+seq))); err != nil {
			t.Fatal(err)
		}
	}
	h, ok, err := ReadHead(path)
	if err != nil || !ok || h.Seq != 7 || !h.valid(w.key) {
		t.Fatalf("head = %+v %v %v", h, ok, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("head file mode %04o", fi.Mode().Perm())
	}
}
