package audit

import (
	"context"
	"io"
	"testing"
)

// TestRecordAll: a batch lands whole and in order on every backend, and a
// batch with a bad event lands not at all.
func TestRecordAll(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		l := be.open(t, Options{})
		ctx := context.Background()
		if err := l.Record(ctx, Event{Type: TypeMailReceived, Sender: "first@example.com"}); err != nil {
			t.Fatal(err)
		}
		batch := []Event{
			{Type: TypeMailReceived, Sender: "a@example.com"},
			{Type: TypeFileStored, FileName: "a.pdf", LinkID: "l1"},
			{Type: TypeLinkCreated, FileName: "a.pdf", LinkID: "l1"},
		}
		if err := RecordAll(ctx, l, batch); err != nil {
			t.Fatal(err)
		}
		bad := []Event{{Type: TypeMailReceived}, {Type: ""}}
		if err := RecordAll(ctx, l, bad); err == nil {
			t.Fatal("a batch with an untyped event was accepted")
		}
		got := l.raw.events(t)
		if len(got) != 4 {
			t.Fatalf("log holds %d events, want 4 (1 + the whole good batch, none of the bad one)", len(got))
		}
		for i, want := range []EventType{TypeMailReceived, TypeMailReceived, TypeFileStored, TypeLinkCreated} {
			if got[i].Type != want || got[i].Seq != int64(i+1) {
				t.Errorf("event %d = seq %d %s, want seq %d %s", i, got[i].Seq, got[i].Type, i+1, want)
			}
		}
		if res, err := l.Verify(ctx, io.Discard); err != nil || !res.OK() {
			t.Fatalf("chain after batch: %v %v", res, err)
		}
	})
}
