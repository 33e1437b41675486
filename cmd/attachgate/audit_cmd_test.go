package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/redistest"
	"github.com/attachgate/attachgate/store/redisstore"
)

// auditLogKind makes handles on one new, empty audit log of one backend:
// each call of the returned func is a fresh handle, as each CLI run opens.
type auditLogKind struct {
	name   string
	newLog func(t *testing.T, loc *time.Location) func() (audit.Log, error)
}

func sqliteAuditLogKind() auditLogKind {
	return auditLogKind{name: "sqlite", newLog: func(t *testing.T, loc *time.Location) func() (audit.Log, error) {
		db := openAuditTestDB(t)
		return func() (audit.Log, error) { return audit.NewSQLite(db, audit.Options{Location: loc}) }
	}}
}

func openAuditTestDB(t *testing.T) *sql.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "attachgate.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// redisAuditLogKind keeps each log under its own prefix on srv.
func redisAuditLogKind(srv *redistest.Server) auditLogKind {
	return auditLogKind{name: "redis", newLog: func(t *testing.T, loc *time.Location) func() (audit.Log, error) {
		st, err := redisstore.Open(context.Background(), redisstore.Options{URL: srv.URL(), KeyPrefix: redisTestPrefix()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return func() (audit.Log, error) {
			return audit.NewRedis(st.Client(), st.KeyPrefix(), audit.Options{Location: loc})
		}
	}}
}

// redisTestPrefixes numbers the key prefixes of the tests' Redis logs.
var redisTestPrefixes atomic.Int64

// redisTestPrefix is a key prefix of its own for each log.
func redisTestPrefix() string {
	return fmt.Sprintf("cli%d:", redisTestPrefixes.Add(1))
}

// testOpener records three events in a new log of kind and returns an
// opener for it, which fails for the config path "missing.yaml".
func testOpener(t *testing.T, kind auditLogKind) auditLogOpener {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	newHandle := kind.newLog(t, loc)
	l, err := newHandle()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, e := range []audit.Event{
		{Time: time.Date(2026, 11, 25, 19, 10, 0, 0, loc), Type: audit.TypeMailReceived, Sender: "alice@example.com", Recipients: []string{"bob@example.net"}},
		{Time: time.Date(2026, 11, 25, 19, 11, 0, 0, loc), Type: audit.TypeDownloadOK, FileName: "a.pdf", LinkID: "l1"},
		{Time: time.Date(2026, 11, 26, 0, 0, 0, 0, loc), Type: "admin.token.created", Actor: "admin:ops"},
	} {
		if err := l.Record(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	return func(p string) (audit.Log, func(), error) {
		if p == "missing.yaml" {
			return nil, nil, errors.New("open missing.yaml: no such file")
		}
		l, err := newHandle()
		return l, func() {}, err
	}
}

func TestRunAudit(t *testing.T) {
	tests := []runAuditCase{
		{name: "jsonl", args: "export -config c.yaml -from 2026-11-25 -to 2026-11-25 -format jsonl", wantOut: []string{`"time":"2026-11-25T19:10:00+09:00"`, `"type":"download.ok"`}, wantLines: 2},
		{name: "double dash flags", args: "export --config c.yaml --from 2026-11-25 --to 2026-11-26 --format=jsonl", wantLines: 3},
		{name: "csv with bom", args: "export -config c.yaml -from 2026-11-25 -to 2026-11-26 -format csv -bom", wantOut: []string{"\xEF\xBB\xBFseq,time,type"}, wantLines: 4},
		{name: "type filter", args: "export -config c.yaml -from 2026-11-01 -to 2026-11-30 -format jsonl -type admin.*,download.ok", wantLines: 2},
		{name: "sender filter with brackets", args: "export -config c.yaml -from 2026-11-01 -to 2026-11-30 -format jsonl -sender <ALICE@example.com>", wantLines: 1},
		{name: "recipient filter", args: "export -config c.yaml -from 2026-11-01 -to 2026-11-30 -format jsonl -recipient bob@example.net", wantLines: 1},
		{name: "future range", args: "export -config c.yaml -from 2030-01-01 -to 2030-12-31 -format csv", wantOut: []string{"seq,time"}, wantLines: 1},
		{name: "verify", args: "verify -config c.yaml", wantOut: []string{"audit chain OK: 3 events"}, wantLines: 1},
		{name: "help", args: "export -h", wantCode: 0, wantErr: []string{"-from"}, wantLines: -1},

		{name: "no subcommand", args: "", wantCode: 2, wantErr: []string{"usage:"}, wantLines: -1},
		{name: "unknown subcommand", args: "exprot", wantCode: 2, wantErr: []string{`unknown subcommand "exprot"`}, wantLines: -1},
		{name: "missing from", args: "export -config c.yaml -to 2026-11-25 -format jsonl", wantCode: 2, wantErr: []string{"-from: missing"}, wantLines: -1},
		{name: "missing to", args: "export -config c.yaml -from 2026-11-25 -format jsonl", wantCode: 2, wantErr: []string{"-to: missing"}, wantLines: -1},
		{name: "bad date", args: "export -config c.yaml -from 2026-13-01 -to 2026-11-25 -format jsonl", wantCode: 2, wantErr: []string{`-from: want YYYY-MM-DD, got "2026-13-01"`}, wantLines: -1},
		{name: "reversed range", args: "export -config c.yaml -from 2026-11-30 -to 2026-11-01 -format jsonl", wantCode: 2, wantErr: []string{"-from 2026-11-30 is after -to 2026-11-01"}, wantLines: -1},
		{name: "missing format", args: "export -config c.yaml -from 2026-11-01 -to 2026-11-30", wantCode: 2, wantErr: []string{"-format: missing"}, wantLines: -1},
		{name: "bad format", args: "export -config c.yaml -from 2026-11-01 -to 2026-11-30 -format xml", wantCode: 2, wantErr: []string{`-format: want jsonl or csv, got "xml"`}, wantLines: -1},
		{name: "bom with jsonl", args: "export -config c.yaml -from 2026-11-01 -to 2026-11-30 -format jsonl -bom", wantCode: 2, wantErr: []string{"-bom"}, wantLines: -1},
		{name: "unknown type", args: "export -config c.yaml -from 2026-11-01 -to 2026-11-30 -format jsonl -type mail.recieved", wantCode: 2, wantErr: []string{`unknown event type "mail.recieved"`}, wantLines: -1},
		{name: "unknown flag", args: "export -config c.yaml -since 2026-11-01", wantCode: 2, wantErr: []string{"-since"}, wantLines: -1},
		{name: "missing config", args: "verify", wantCode: 2, wantErr: []string{"-config: missing"}, wantLines: -1},
		{name: "stray argument", args: "verify -config c.yaml extra", wantCode: 2, wantErr: []string{`unexpected argument "extra"`}, wantLines: -1},
		{name: "config fails to open", args: "verify -config missing.yaml", wantCode: 1, wantErr: []string{"open audit log: open missing.yaml"}, wantLines: -1},
	}
	for _, kind := range []auditLogKind{sqliteAuditLogKind(), redisAuditLogKind(redistest.Start(t))} {
		t.Run(kind.name, func(t *testing.T) { runAuditTable(t, kind, tests) })
	}
}

type runAuditCase struct {
	name      string
	args      string
	wantCode  int
	wantOut   []string // substrings of stdout
	wantErr   []string // substrings of stderr
	wantLines int      // stdout lines, -1 to skip
}

func runAuditTable(t *testing.T, kind auditLogKind, tests []runAuditCase) {
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			open := testOpener(t, kind)
			var stdout, stderr bytes.Buffer
			code := runAudit(strings.Fields(tt.args), &stdout, &stderr, open)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.wantCode, stderr.String())
			}
			for _, s := range tt.wantOut {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout %q lacks %q", stdout.String(), s)
				}
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr %q lacks %q", stderr.String(), s)
				}
			}
			if tt.wantLines >= 0 {
				if n := strings.Count(stdout.String(), "\n"); n != tt.wantLines {
					t.Errorf("stdout has %d lines, want %d: %q", n, tt.wantLines, stdout.String())
				}
				if tt.wantCode == 0 && stderr.Len() > 0 {
					t.Errorf("stderr on success: %q", stderr.String())
				}
			}
		})
	}
}

func TestRunAuditCSVParses(t *testing.T) {
	open := testOpener(t, sqliteAuditLogKind())
	var stdout, stderr bytes.Buffer
	if code := runAudit(strings.Fields("export -config c -from 2026-11-25 -to 2026-11-26 -format csv"), &stdout, &stderr, open); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	recs, err := csv.NewReader(&stdout).ReadAll()
	if err != nil || len(recs) != 4 || recs[0][1] != "time" {
		t.Fatalf("csv: %v %q", err, recs)
	}
}

func TestRunAuditVerifyBroken(t *testing.T) {
	loc := time.UTC
	db := openAuditTestDB(t)
	l, err := audit.NewSQLite(db, audit.Options{Location: loc})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []audit.Event{{Type: audit.TypeMailReceived}, {Type: audit.TypeDownloadOK, FileName: "a.pdf"}, {Type: audit.TypeMailRelayed}} {
		if err := l.Record(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	open := func(string) (audit.Log, func(), error) { return l, func() {}, nil }
	if _, err := db.Exec(`UPDATE audit_events SET file_name = 'b.pdf' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := runAudit([]string{"verify", "-config", "c.yaml"}, &stdout, &stderr, open)
	if code != 1 || !strings.Contains(stderr.String(), "seq 2: hash mismatch") || !strings.Contains(stdout.String(), "BROKEN") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// TestRunAuditVerifyBrokenRedis: an event deleted from the Redis stream
// (XDEL) is a gap the verify command reports.
func TestRunAuditVerifyBrokenRedis(t *testing.T) {
	srv := redistest.Start(t)
	st, err := redisstore.Open(context.Background(), redisstore.Options{URL: srv.URL(), KeyPrefix: redisTestPrefix()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, err := audit.NewRedis(st.Client(), st.KeyPrefix(), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		if err := l.Record(ctx, audit.Event{Type: audit.TypeMailReceived}); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := st.Client().XRange(ctx, st.KeyPrefix()+"audit:events", "-", "+").Result()
	if err != nil || len(entries) != 3 {
		t.Fatalf("stream: %v, %v", entries, err)
	}
	if err := st.Client().XDel(ctx, st.KeyPrefix()+"audit:events", entries[1].ID).Err(); err != nil {
		t.Fatal(err)
	}
	open := func(string) (audit.Log, func(), error) { return l, func() {}, nil }
	var stdout, stderr bytes.Buffer
	code := runAudit([]string{"verify", "-config", "c.yaml"}, &stdout, &stderr, open)
	if code != 1 || !strings.Contains(stderr.String(), "seq 3: seq gap") || !strings.Contains(stdout.String(), "BROKEN") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}
