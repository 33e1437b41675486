package audit

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// remainingEvents lists the events left (seq, local time, type, detail) in seq order.
func remainingEvents(t *testing.T, l *openedLog) []Event {
	t.Helper()
	return l.raw.events(t)
}

func TestPurgeRetentionBoundary(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		loc := tokyo(t)
		clock := &fixedClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, loc)}
		l := be.open(t, Options{Now: clock.Now, Location: loc}) // Retention: default 90

		if got, want := l.RetentionCutoff(), time.Date(2026, 8, 28, 0, 0, 0, 0, loc); !got.Equal(want) {
			t.Fatalf("cutoff = %v, want %v", got, want)
		}
		times := []time.Time{
			time.Date(2026, 8, 1, 9, 0, 0, 0, loc),
			time.Date(2026, 8, 27, 0, 0, 0, 0, loc),
			time.Date(2026, 8, 27, 23, 59, 59, 999_999_999, loc), // last instant of day 91: gone
			time.Date(2026, 8, 28, 0, 0, 0, 0, loc),              // first instant of day 90: stays
			time.Date(2026, 10, 1, 12, 0, 0, 0, loc),
			time.Date(2026, 11, 25, 11, 0, 0, 0, loc),
		}
		var recorded []Event
		for _, tm := range times {
			recorded = append(recorded, mustRecord(t, l, Event{Type: TypeMailRelayed, Time: tm}))
		}
		lastGone := recorded[2]

		removed, err := l.Purge(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if removed != 3 {
			t.Errorf("removed %d events, want 3", removed)
		}
		left := remainingEvents(t, l)
		if len(left) != 4 || !left[0].Time.Equal(times[3]) {
			t.Fatalf("left after purge: %v", left)
		}
		purge := left[len(left)-1]
		wantDetail := fmt.Sprintf("removed=3 before=2026-08-28T00:00:00+09:00 last_seq=%d last_hash=%s", lastGone.Seq, lastGone.Hash)
		if purge.Type != TypeAuditPurged || purge.Detail != wantDetail {
			t.Errorf("purge event = %s %q, want %s %q", purge.Type, purge.Detail, TypeAuditPurged, wantDetail)
		}
		res := mustVerifyOK(t, l)
		if !res.Anchored || res.AnchorSeq != lastGone.Seq || res.AnchorHash != lastGone.Hash || res.FirstSeq != lastGone.Seq+1 {
			t.Errorf("verify after purge: %s", res)
		}

		// Nothing more to remove today: no new event.
		if removed, err := l.Purge(context.Background()); err != nil || removed != 0 {
			t.Errorf("second purge: removed %d, %v", removed, err)
		}
		if n := len(remainingEvents(t, l)); n != 4 {
			t.Errorf("%d events after an empty purge, want 4", n)
		}

		// A day later 2026-08-28 falls out as well; the chain re-anchors.
		clock.t = clock.t.AddDate(0, 0, 1)
		mustRecord(t, l, Event{Type: TypeMailReceived})
		if removed, err := l.Purge(context.Background()); err != nil || removed != 1 {
			t.Errorf("next day's purge: removed %d, %v", removed, err)
		}
		mustVerifyOK(t, l)

		// Everything expired, the purge events too: the chain continues from
		// the anchor.
		clock.t = time.Date(2027, 6, 1, 0, 0, 0, 0, loc)
		if _, err := l.Purge(context.Background()); err != nil {
			t.Fatal(err)
		}
		left = remainingEvents(t, l)
		if len(left) != 1 || left[0].Type != TypeAuditPurged {
			t.Fatalf("left after purging everything: %v", left)
		}
		mustRecord(t, l, Event{Type: TypeMailReceived})
		mustVerifyOK(t, l)
	})
}

// TestPurgeKeepsAPrefix: an older-dated event after a kept one stays, or
// the chain would have a hole.
func TestPurgeKeepsAPrefix(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		clock := &fixedClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
		l := be.open(t, Options{Now: clock.Now, Location: time.UTC, Retention: 7})
		mustRecord(t, l, Event{Type: TypeMailReceived, Time: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
		mustRecord(t, l, Event{Type: TypeMailReceived, Time: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)})
		mustRecord(t, l, Event{Type: TypeMailReceived, Time: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)})
		removed, err := l.Purge(context.Background())
		if err != nil || removed != 1 {
			t.Fatalf("purge: removed %d, %v; want 1", removed, err)
		}
		mustVerifyOK(t, l)
	})
}

func TestVerifyChecksAnchorAgainstPurgeEvent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		clock := &fixedClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
		l := be.open(t, Options{Now: clock.Now, Location: time.UTC})
		mustRecord(t, l, Event{Type: TypeMailReceived, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		mustRecord(t, l, Event{Type: TypeMailReceived})
		if _, err := l.Purge(context.Background()); err != nil {
			t.Fatal(err)
		}
		mustVerifyOK(t, l)

		// Deleting the first remaining event and moving the anchor to it keeps
		// the chain linked, but no purge statement backs the new anchor.
		first := remainingEvents(t, l)[0]
		l.raw.rewrite(t, dropSeqs(first.Seq))
		l.raw.setAnchor(t, first.Seq, first.Hash)
		res, err := l.Verify(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Break == nil || res.Break.Kind != BreakAnchorMismatch {
			t.Errorf("break = %v, want anchor mismatch", res.Break)
		}
	})
}

func TestRunRetentionPurgesAtStart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		clock := &fixedClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
		l := be.open(t, Options{Now: clock.Now, Location: time.UTC, Logger: slog.New(slog.DiscardHandler)})
		mustRecord(t, l, Event{Type: TypeMailReceived, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			l.RunRetention(ctx, time.Hour)
			close(done)
		}()
		deadline := time.Now().Add(5 * time.Second)
		for {
			left := remainingEvents(t, l)
			if len(left) == 1 && left[0].Type == TypeAuditPurged && strings.HasPrefix(left[0].Detail, "removed=1 ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no purge at start; events: %v", left)
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("RunRetention did not stop after cancel")
		}
	})
}
