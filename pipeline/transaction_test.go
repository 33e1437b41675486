package pipeline

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
)

// TestTransactionEndsOnce: after Commit, an Abort (a caller's deferred
// clean-up, say) neither rolls the relayed message back nor records a
// second outcome; after Abort, Commit does not record mail.relayed.
func TestTransactionEndsOnce(t *testing.T) {
	p := benchPipeline(t)
	env := Envelope{From: "a@example.com", To: []string{"b@example.net"}, ClientAddr: "127.0.0.1", Helo: "client"}
	blobs := filepath.Join(filepath.Dir(p.SpoolDir), "blobs")

	tx := p.Begin(context.Background(), env, &benchHop{})
	if err := tx.Body(context.Background(), bytes.NewReader(benchMail(64<<10))); err != nil {
		t.Fatal(err)
	}
	if reply := tx.Commit(context.Background()); reply != "2.0.0 Ok: queued" {
		t.Fatalf("Commit = %q", reply)
	}
	cause := errors.New("late failure")
	if err := tx.Abort(cause); err != cause {
		t.Fatalf("Abort after Commit = %v, want its argument back", err)
	}
	if n := countFiles(t, blobs); n != 1 {
		t.Fatalf("%d blobs after Commit then Abort, want the relayed message's 1", n)
	}
	if _, err := p.Store.LinkByID(context.Background(), tx.links[0].ID); err != nil {
		t.Fatalf("link of a committed message gone: %v", err)
	}

	tx = p.Begin(context.Background(), env, &benchHop{})
	if err := tx.Body(context.Background(), bytes.NewReader(benchMail(64<<10))); err != nil {
		t.Fatal(err)
	}
	tx.Abort(cause)
	tx.Commit(context.Background())
	if n := countFiles(t, blobs); n != 1 {
		t.Fatalf("%d blobs after Abort, want the first message's 1 only", n)
	}
	if n := countFiles(t, p.SpoolDir); n != 0 {
		t.Fatalf("%d spool files left", n)
	}
}

// countFiles counts the regular files below dir.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}
