package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/metrics"
	"github.com/attachgate/attachgate/relay"
)

// TestServeSharesOneCommitPerMessage: the pipeline serve wires (through
// the metrics wrappers and the dataset guard) records a message's
// metadata and its audit events in one SQLite transaction, and queues
// mail.relayed for the next group commit. Before, the wrappers hid the
// log's RecordWith and Append: every message paid three WAL fsyncs
// (store, events, mail.relayed) instead of one shared commit.
func TestServeSharesOneCommitPerMessage(t *testing.T) {
	dir := t.TempDir()
	c, err := config.Parse(strings.NewReader(fmt.Sprintf("storage:\n  dir: %q\n", filepath.Join(dir, "data"))))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	b, err := openBackend(c, log)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m := metrics.New(log)
	hop := relay.New("outbox:"+filepath.Join(dir, "outbox"), "gw.test", time.Minute, "", nil)
	obs := observe(m, b, hop, log)
	pl := newPipeline(c, b, obs, nil, log)
	if !pl.SharedCommit() {
		t.Fatal("serve's pipeline commits a message's records and events separately")
	}
	// The whole chain takes a shared transaction, not only its outer
	// wrapper.
	rw, ok := obs.audit.(interface {
		RecordWith(context.Context, []audit.Event, audit.TxFunc) error
	})
	if !ok {
		t.Fatal("serve's audit log hides RecordWith")
	}
	if err := rw.RecordWith(context.Background(), []audit.Event{{Type: audit.TypeMailReceived, Actor: "smtp"}}, nil); err != nil {
		t.Fatalf("a shared transaction through serve's wrappers: %v", err)
	}
	ap, ok := obs.audit.(interface {
		Append([]audit.Event, func(error))
	})
	if !ok {
		t.Fatal("serve's audit log hides Append: mail.relayed would pay a commit of its own")
	}
	done := make(chan error, 1)
	ap.Append([]audit.Event{{Type: audit.TypeMailRelayed, Actor: "smtp"}}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f, ok := b.audit.(interface{ Flush(context.Context) error }); !ok {
		t.Fatal("serve's audit log hides Flush: events queued at shutdown would be lost")
	} else if err := f.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
}
