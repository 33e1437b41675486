package audit

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests in this file, export_test.go and retention_test.go run on
// every backend (forEachBackend): SQLite and Redis must behave alike.

func TestRecordAssignsChainFields(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		now := time.Date(2026, 11, 25, 10, 0, 0, 123, time.UTC)
		l := be.open(t, Options{Now: func() time.Time { return now }})

		first := mustRecord(t, l, Event{Type: TypeMailReceived, Seq: 99, PrevHash: "forged", Hash: "forged"})
		if first.Seq != 1 || first.PrevHash != "" || !first.Time.Equal(now) {
			t.Errorf("first event: seq %d prev %q time %v", first.Seq, first.PrevHash, first.Time)
		}
		given := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
		second := mustRecord(t, l, Event{Type: TypeMailRelayed, Time: given})
		if second.Seq != 2 || second.PrevHash != first.Hash || !second.Time.Equal(given) {
			t.Errorf("second event: seq %d prev %q time %v", second.Seq, second.PrevHash, second.Time)
		}
		if h, _ := HashEvent(second); h != second.Hash {
			t.Errorf("stored hash %s, recomputed %s", second.Hash, h)
		}

		if err := l.Record(context.Background(), Event{}); err == nil {
			t.Error("event without type accepted")
		}
		if err := l.Record(context.Background(), Event{Type: TypeMailReceived, Time: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
			t.Error("time beyond 2262 accepted")
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := l.Record(ctx, Event{Type: TypeMailReceived}); !errors.Is(err, context.Canceled) {
			t.Errorf("Record with cancelled context: %v, want context.Canceled", err)
		}
		// A failed write must leave the log usable and the chain intact.
		mustRecord(t, l, Event{Type: TypeMailReceived})
		if res := mustVerifyOK(t, l); res.Events != 3 {
			t.Errorf("verified %d events, want 3", res.Events)
		}
	})
}

// TestRecordConcurrent records from 8 goroutines through two handles on
// one log: two pools (SQLite) or two clients (Redis) stand in for two
// processes or gateway instances, which the in-process mutex does not
// serialise, so only BEGIN IMMEDIATE, or WATCH on the Redis chain head,
// keeps the chain linear.
func TestRecordConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		l1 := be.open(t, Options{})
		l2 := l1.twin(t, Options{})
		logs := []testLog{l1, l2}

		const writers, perWriter = 8, 40
		var wg sync.WaitGroup
		seqs := make([][]int64, writers)
		errs := make(chan error, writers)
		for w := range writers {
			wg.Go(func() {
				l := logs[w%len(logs)]
				for i := range perWriter {
					e, err := l.record(context.Background(), Event{Type: TypeDownloadOK, Actor: "web", Detail: strings.Repeat("x", i)})
					if err != nil {
						errs <- err
						return
					}
					seqs[w] = append(seqs[w], e.Seq)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("concurrent record: %v", err)
		}

		seen := make(map[int64]bool)
		for w, s := range seqs {
			for i := 1; i < len(s); i++ {
				if s[i] <= s[i-1] {
					t.Errorf("writer %d: seq %d after %d", w, s[i], s[i-1])
				}
			}
			for _, q := range s {
				if seen[q] {
					t.Errorf("seq %d assigned twice", q)
				}
				seen[q] = true
			}
		}
		res := mustVerifyOK(t, l2)
		if res.Events != writers*perWriter || res.FirstSeq != 1 || res.LastSeq != writers*perWriter {
			t.Errorf("verify: %s", res)
		}
	})
}

// atSeq applies change to the event seq and keeps every event.
func atSeq(seq int64, change func(r *storedRow)) func(r *storedRow) bool {
	return func(r *storedRow) bool {
		if r.Seq == seq {
			change(r)
		}
		return true
	}
}

// dropSeqs deletes the events with these seqs.
func dropSeqs(seqs ...int64) func(r *storedRow) bool {
	return func(r *storedRow) bool {
		for _, s := range seqs {
			if r.Seq == s {
				return false
			}
		}
		return true
	}
}

func TestVerifyFindsTampering(t *testing.T) {
	tests := []struct {
		name     string
		tamper   func(tb testing.TB, raw rawLog)
		wantSeq  int64
		wantKind BreakKind
	}{
		{"field edited", func(tb testing.TB, raw rawLog) {
			raw.rewrite(tb, atSeq(5, func(r *storedRow) { r.Sender = "mallory@example.com" }))
		}, 5, BreakHashMismatch},
		{"recipient edited", func(tb testing.TB, raw rawLog) {
			raw.rewrite(tb, atSeq(5, func(r *storedRow) { r.Recipients = []byte(`["mallory@example.com"]`) }))
		}, 5, BreakHashMismatch},
		{"time edited", func(tb testing.TB, raw rawLog) {
			raw.rewrite(tb, atSeq(5, func(r *storedRow) { r.TimeNS++ }))
		}, 5, BreakHashMismatch},
		{"recipients garbled", func(tb testing.TB, raw rawLog) {
			raw.rewrite(tb, atSeq(5, func(r *storedRow) { r.Recipients = []byte("nonsense") }))
		}, 5, BreakHashMismatch},
		{"hash column edited", func(tb testing.TB, raw rawLog) {
			raw.rewrite(tb, atSeq(5, func(r *storedRow) { r.Hash = "beef" }))
		}, 5, BreakHashMismatch},
		{"middle event deleted", func(tb testing.TB, raw rawLog) { raw.rewrite(tb, dropSeqs(5)) }, 6, BreakSeqGap},
		{"first event deleted", func(tb testing.TB, raw rawLog) { raw.rewrite(tb, dropSeqs(1)) }, 2, BreakSeqGap},
		{"events renumbered", func(tb testing.TB, raw rawLog) {
			raw.rewrite(tb, func(r *storedRow) bool {
				switch {
				case r.Seq == 5:
					return false
				case r.Seq > 5:
					r.Seq--
				}
				return true
			})
		}, 5, BreakPrevMismatch},
		{"fake anchor", func(tb testing.TB, raw rawLog) { raw.setAnchor(tb, 0, "x") }, 1, BreakPrevMismatch},
	}
	forEachBackend(t, func(t *testing.T, be backend) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				l := be.open(t, Options{})
				for i := range 8 {
					mustRecord(t, l, Event{Type: TypeMailReceived, Sender: "alice@example.com", Recipients: []string{"bob@example.net"}, Size: int64(i)})
				}
				mustVerifyOK(t, l)
				tt.tamper(t, l.raw)
				var report strings.Builder
				res, err := l.Verify(context.Background(), &report)
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if res.OK() {
					t.Fatalf("tampering not detected: %s", res)
				}
				if res.Break.Seq != tt.wantSeq || res.Break.Kind != tt.wantKind {
					t.Errorf("break = %s, want %s at seq %d", res.Break, tt.wantKind, tt.wantSeq)
				}
				if !strings.Contains(report.String(), "BROKEN") || !strings.Contains(report.String(), string(tt.wantKind)) {
					t.Errorf("report %q does not name the break", report.String())
				}
			})
		}
	})
}

// TestVerifyRehashedEdit: an editor who also recomputes the edited event's
// hash breaks the link to the next event.
func TestVerifyRehashedEdit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		l := be.open(t, Options{})
		var events []Event
		for range 4 {
			events = append(events, mustRecord(t, l, Event{Type: TypeDownloadOK, ClientAddr: "198.51.100.7"}))
		}
		forged := events[1]
		forged.ClientAddr = "192.0.2.1"
		hash, err := HashEvent(forged)
		if err != nil {
			t.Fatal(err)
		}
		l.raw.rewrite(t, atSeq(forged.Seq, func(r *storedRow) { r.ClientAddr, r.Hash = forged.ClientAddr, hash }))
		res, err := l.Verify(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Break == nil || res.Break.Seq != 3 || res.Break.Kind != BreakPrevMismatch {
			t.Errorf("break = %v, want prev mismatch at seq 3", res.Break)
		}
	})
}

func TestVerifyReportsSeqGap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		l := be.open(t, Options{})
		for range 6 {
			mustRecord(t, l, Event{Type: TypeLinkViewed})
		}
		l.raw.rewrite(t, dropSeqs(3, 4))
		res, err := l.Verify(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		want := Break{Seq: 5, Kind: BreakSeqGap, Want: "3", Got: "5"}
		if res.Break == nil || *res.Break != want {
			t.Errorf("break = %v, want %v", res.Break, want)
		}
	})
}

func TestVerifyEmptyLog(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		l := be.open(t, Options{})
		var report strings.Builder
		res, err := l.Verify(context.Background(), &report)
		if err != nil || !res.OK() || res.Events != 0 {
			t.Errorf("empty log: %s, %v", res, err)
		}
		if !strings.Contains(report.String(), "OK: 0 events") {
			t.Errorf("report %q", report.String())
		}
	})
}

// TestOddStringsVerify: whatever bytes a client sends (invalid UTF-8, NUL,
// control characters) must read back as stored, or honest events would
// fail verification.
func TestOddStringsVerify(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		l := be.open(t, Options{})
		odd := "a\xffb\x00c\u2028d\r\n\"<&>"
		stored := mustRecord(t, l, Event{Type: TypeDownloadDenied, UserAgent: odd, FileName: odd, Recipients: []string{odd},
			Expires: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)})
		mustVerifyOK(t, l)
		if err := l.Export(context.Background(), Query{}, io.Discard, FormatJSONL, false); err != nil {
			t.Errorf("export jsonl: %v", err)
		}
		if err := l.Export(context.Background(), Query{}, io.Discard, FormatCSV, false); err != nil {
			t.Errorf("export csv: %v", err)
		}
		if h, _ := HashEvent(stored); h != stored.Hash {
			t.Errorf("returned event hashes to %s, stored %s", h, stored.Hash)
		}
		if err := l.Record(context.Background(), Event{Type: TypeLinkCreated, Expires: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
			t.Error("expiry in year 10000 accepted")
		}
	})
}
