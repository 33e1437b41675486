package audit

import (
	"context"
	"database/sql"
	"io"
	"path/filepath"
	"testing"
	"time"
)

func TestNewSQLiteIsIdempotentAndDefaults(t *testing.T) {
	db, _ := openTestDB(t)
	for range 2 {
		l, err := NewSQLite(db, Options{})
		if err != nil {
			t.Fatalf("NewSQLite: %v", err)
		}
		if l.retention != DefaultRetentionDays || l.loc != time.Local || l.now == nil {
			t.Errorf("defaults: retention %d, loc %v", l.retention, l.loc)
		}
	}
	if _, err := NewSQLite(db, Options{Retention: -1}); err == nil {
		t.Error("negative retention accepted")
	}
}

// TestWithStoreDSN runs the log on a database opened with package store's
// parameters: _txlock=immediate must not turn Verify's read transaction
// into a writer, nor clash with the log's own BEGIN IMMEDIATE.
func TestWithStoreDSN(t *testing.T) {
	path := filepath.Join(t.TempDir(), "attachgate.db")
	db, err := sql.Open("sqlite", path+"?_txlock=immediate&_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l, err := NewSQLite(db, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		mustRecord(t, l, Event{Type: TypeMailReceived})
	}
	// A writer holding the lock must not stop verification or export.
	writer, err := db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Rollback()
	if _, err := writer.Exec(`INSERT INTO audit_anchor (id, seq, hash) VALUES (1, 0, '')`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if res := mustVerifyOK(t, l); res.Events != 3 {
		t.Errorf("verified %d events", res.Events)
	}
	if err := l.Export(ctx, Query{}, io.Discard, FormatCSV, false); err != nil {
		t.Errorf("export while a writer holds the lock: %v", err)
	}
}
