package audit

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

var fuzzDBs atomic.Int64

// FuzzExport is the audit export reader under hostile text: whatever a
// client puts into the fields it controls (User-Agent, HELO, AUTH
// identity, addresses, file names, reasons), an event recorded and
// exported comes back as one JSONL line that decodes to the same text
// (invalid UTF-8 replaced), one CSV record that encoding/csv reads with
// every cell but formula-neutralised ones equal, no cell starting a
// spreadsheet formula, and the chain still verifies.
func FuzzExport(f *testing.F) {
	f.Add("Mozilla/5.0", "client.test", "alice", "alice@example.com", "bob@example.net", "見積書.pdf", "ok", "detail")
	f.Add(`=HYPERLINK("x")`, "+1", "-2", "\talice@example.com", "@x", "a\r\nb.pdf", "\r", "line1\nline2\"quoted\"")
	f.Add("\xff\xfe", "\x00", "a\u2028b", "\u202e", "", ",", "\"", "'")
	f.Fuzz(func(t *testing.T, ua, helo, authUser, sender, rcpt, fileName, reason, detail string) {
		// A database of its own per input, in a directory whose name has
		// no '#' (the seed subtests' names do, and SQLite reads the path
		// as a URI: '#' would cut it).
		dir, err := os.MkdirTemp("", "fuzzexport")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		db := openDBAt(t, filepath.Join(dir, fmt.Sprintf("fuzz-%d.db", fuzzDBs.Add(1))))
		day := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		l, err := NewSQLite(db, Options{Location: time.UTC, Now: func() time.Time { return day }})
		if err != nil {
			t.Fatal(err)
		}
		e := Event{Time: day, Type: TypeDownloadOK, Actor: "web", ClientAddr: "192.0.2.1", UserAgent: ua,
			Helo: helo, AuthUser: authUser, Sender: sender, Recipients: []string{rcpt}, FileName: fileName,
			Reason: reason, Detail: detail}
		if err := l.Record(context.Background(), e); err != nil {
			return // refused input is fine; a refusal must not corrupt the log
		}
		valid := func(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

		var jsonl bytes.Buffer
		if err := l.Export(context.Background(), Query{}, &jsonl, FormatJSONL, false); err != nil {
			t.Fatalf("export jsonl: %v", err)
		}
		lines := bytes.Split(bytes.TrimRight(jsonl.Bytes(), "\n"), []byte("\n"))
		if len(lines) != 1 {
			t.Fatalf("%d JSONL lines for one event:\n%s", len(lines), jsonl.Bytes())
		}
		if !utf8.Valid(lines[0]) {
			t.Fatal("JSONL line is not valid UTF-8")
		}
		var got map[string]any
		if err := json.Unmarshal(lines[0], &got); err != nil {
			t.Fatalf("JSONL line does not decode: %v", err)
		}
		for k, want := range map[string]string{"user_agent": ua, "helo": helo, "auth_user": authUser,
			"sender": sender, "file_name": fileName, "reason": reason, "detail": detail} {
			if v, _ := got[k].(string); v != valid(want) {
				t.Errorf("JSONL %s = %q, want %q", k, v, valid(want))
			}
		}

		var out bytes.Buffer
		if err := l.Export(context.Background(), Query{}, &out, FormatCSV, false); err != nil {
			t.Fatalf("export csv: %v", err)
		}
		records, err := csv.NewReader(&out).ReadAll()
		if err != nil || len(records) != 2 {
			t.Fatalf("CSV: %v, %d records, want header and one row", err, len(records))
		}
		for i, cell := range records[1] {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Errorf("CSV column %s starts a formula: %q", csvColumns[i], cell)
			}
		}
		col := func(name string) string { return records[1][slices.Index(csvColumns, name)] }
		// A neutralised cell is the text behind one quote; encoding/csv
		// reads CRLF inside a quoted field as LF.
		norm := func(s string) string { return strings.ReplaceAll(valid(s), "\r\n", "\n") }
		for name, want := range map[string]string{"user_agent": ua, "file_name": fileName, "detail": detail} {
			got := col(name)
			if got != norm(want) && got != "'"+strings.TrimLeft(norm(want), "\r") && strings.TrimPrefix(got, "'") != norm(want) {
				t.Errorf("CSV %s = %q, want %q (maybe behind a quote)", name, got, norm(want))
			}
		}
		if res, err := l.Verify(context.Background(), nil); err != nil || res.Events != 1 {
			t.Fatalf("verify after a hostile event: %+v, %v", res, err)
		}
	})
}
