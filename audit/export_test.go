package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseDateRange(t *testing.T) {
	loc := tokyo(t)
	tests := []struct {
		from, to string
		wantFrom time.Time
		wantTo   time.Time
		wantErr  string
	}{
		{from: "2026-11-01", to: "2026-11-30", wantFrom: time.Date(2026, 11, 1, 0, 0, 0, 0, loc), wantTo: time.Date(2026, 11, 30, 0, 0, 0, 0, loc)},
		{from: "2026-11-25", to: "2026-11-25", wantFrom: time.Date(2026, 11, 25, 0, 0, 0, 0, loc), wantTo: time.Date(2026, 11, 25, 0, 0, 0, 0, loc)},
		{from: "2024-02-29", to: "9999-12-31", wantFrom: time.Date(2024, 2, 29, 0, 0, 0, 0, loc), wantTo: time.Date(9999, 12, 31, 0, 0, 0, 0, loc)},
		{from: "2026-13-01", to: "2026-11-30", wantErr: `-from: want YYYY-MM-DD, got "2026-13-01"`},
		{from: "2026-11-01", to: "2026-02-30", wantErr: `-to: want YYYY-MM-DD, got "2026-02-30"`},
		{from: "2026/11/01", to: "2026-11-30", wantErr: `-from: want YYYY-MM-DD, got "2026/11/01"`},
		{from: "2026-11-1", to: "2026-11-30", wantErr: `-from: want YYYY-MM-DD, got "2026-11-1"`},
		{from: "2026-11-01T00:00:00Z", to: "2026-11-30", wantErr: `-from: want YYYY-MM-DD, got "2026-11-01T00:00:00Z"`},
		{from: "", to: "2026-11-30", wantErr: `-from: missing, want YYYY-MM-DD`},
		{from: "2026-11-01", to: "", wantErr: `-to: missing, want YYYY-MM-DD`},
		{from: "2026-11-30", to: "2026-11-01", wantErr: `-from 2026-11-30 is after -to 2026-11-01`},
	}
	for _, tt := range tests {
		t.Run(tt.from+"_"+tt.to, func(t *testing.T) {
			q, err := ParseDateRange(tt.from, tt.to, loc)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !q.From.Equal(tt.wantFrom) || !q.To.Equal(tt.wantTo) || q.From.Location() != loc {
				t.Errorf("got %v..%v, want %v..%v", q.From, q.To, tt.wantFrom, tt.wantTo)
			}
		})
	}
}

// exportFixture records a small, varied log in Asia/Tokyo.
func exportFixture(t *testing.T, be backend) testLog {
	t.Helper()
	loc := tokyo(t)
	l := be.open(t, Options{Location: loc, Now: func() time.Time { return time.Date(2026, 11, 26, 0, 0, 0, 0, loc) }})
	events := []Event{
		{Time: time.Date(2026, 11, 24, 23, 59, 59, 0, loc), Type: TypeMailReceived, Sender: "early@example.com"},
		{Time: time.Date(2026, 11, 25, 0, 0, 0, 0, loc), Type: TypeMailReceived, Actor: "smtp", ClientAddr: "192.0.2.10",
			Helo: "mx.example.com", Sender: "Alice@Example.com", Recipients: []string{"bob@example.net", "carol@example.org"}, Size: 2048},
		{Time: time.Date(2026, 11, 25, 19, 10, 0, 0, loc), Type: TypeFileStored, Actor: "smtp", Sender: "alice@example.com",
			Recipients: []string{"bob@example.net"}, FileID: "f-1", FileName: "見積書 <v2>.pdf", Size: 1000, SHA256: "abc",
			LinkID: "l-1", Expires: time.Date(2026, 12, 2, 10, 10, 0, 0, time.UTC)},
		{Time: time.Date(2026, 11, 25, 20, 0, 0, 0, loc), Type: TypeDownloadOK, Actor: "web", ClientAddr: "203.0.113.5",
			UserAgent: `Mozilla/5.0 "quoted", comma`, FileID: "f-1", FileName: "見積書 <v2>.pdf", LinkID: "l-1"},
		{Time: time.Date(2026, 11, 25, 21, 0, 0, 0, loc), Type: "admin.token.created", Actor: "admin:ops", Detail: "token ci\nsecond line"},
		{Time: time.Date(2026, 11, 25, 23, 59, 59, 999_000_000, loc), Type: TypeMailRelayed, Sender: "dave@example.com",
			Recipients: []string{"bob@example.net"}, Reply: "250 2.0.0 Ok: queued"},
		{Time: time.Date(2026, 11, 26, 0, 0, 0, 0, loc), Type: TypeMailReceived, Sender: "late@example.com"},
	}
	for _, e := range events {
		mustRecord(t, l, e)
	}
	return l
}

func exportString(t *testing.T, l Log, q Query, format string, bom bool) string {
	t.Helper()
	var buf bytes.Buffer
	if err := l.Export(context.Background(), q, &buf, format, bom); err != nil {
		t.Fatalf("Export %s: %v", format, err)
	}
	return buf.String()
}

func dayRange(t *testing.T, l Log, from, to string) Query {
	t.Helper()
	q, err := ParseDateRange(from, to, l.Location())
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func decodeJSONL(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestExportJSONL(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		l := exportFixture(t, be)
		lines := decodeJSONL(t, exportString(t, l, dayRange(t, l, "2026-11-25", "2026-11-25"), FormatJSONL, false))

		// The 00:00:00 event and the 23:59:59.999 one are in; the ones a second
		// before and at midnight after are out.
		var times []string
		for _, m := range lines {
			times = append(times, m["time"].(string))
		}
		wantTimes := []string{
			"2026-11-25T00:00:00+09:00", "2026-11-25T19:10:00+09:00", "2026-11-25T20:00:00+09:00",
			"2026-11-25T21:00:00+09:00", "2026-11-25T23:59:59+09:00",
		}
		if !slices.Equal(times, wantTimes) {
			t.Fatalf("times = %q, want %q", times, wantTimes)
		}
		for _, m := range lines {
			if _, err := time.Parse(time.RFC3339, m["time"].(string)); err != nil {
				t.Errorf("time not RFC 3339: %v", err)
			}
		}

		stored := lines[1]
		want := map[string]any{
			"seq": 3.0, "time": "2026-11-25T19:10:00+09:00", "type": "file.stored", "actor": "smtp",
			"sender": "alice@example.com", "recipients": []any{"bob@example.net"}, "size": 1000.0,
			"file_id": "f-1", "file_name": "見積書 <v2>.pdf", "sha256": "abc", "link_id": "l-1",
			"expires": "2026-12-02T19:10:00+09:00", "prev_hash": stored["prev_hash"], "hash": stored["hash"],
		}
		if len(stored) != len(want) {
			t.Errorf("keys = %v, want only non-empty fields %v", keys(stored), keys(want))
		}
		for k, v := range want {
			if !jsonEqual(stored[k], v) {
				t.Errorf("%s = %v, want %v", k, stored[k], v)
			}
		}
		if len(stored["hash"].(string)) != 64 {
			t.Errorf("hash %v", stored["hash"])
		}
		admin := lines[3]
		for _, empty := range []string{"recipients", "size", "sender", "expires", "client_addr"} {
			if _, has := admin[empty]; has {
				t.Errorf("admin event carries empty field %q: %v", empty, admin)
			}
		}
		if admin["detail"] != "token ci\nsecond line" || admin["type"] != "admin.token.created" {
			t.Errorf("admin event = %v", admin)
		}
	})
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func TestExportCSV(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		l := exportFixture(t, be)
		out := exportString(t, l, dayRange(t, l, "2026-11-25", "2026-11-25"), FormatCSV, false)
		if strings.HasPrefix(out, utf8BOM) {
			t.Fatal("BOM written without being asked for")
		}
		records, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatalf("parse CSV: %v", err)
		}
		if !slices.Equal(records[0], CSVColumns()) {
			t.Fatalf("header = %q", records[0])
		}
		if len(records) != 6 {
			t.Fatalf("%d rows, want header + 5", len(records))
		}
		col := func(row []string, name string) string { return row[slices.Index(csvColumns, name)] }
		first := records[1]
		if col(first, "time") != "2026-11-25T00:00:00+09:00" || col(first, "recipients") != "bob@example.net carol@example.org" ||
			col(first, "size") != "2048" || col(first, "helo") != "mx.example.com" || col(first, "expires") != "" {
			t.Errorf("first row = %q", first)
		}
		download := records[3]
		if col(download, "user_agent") != `Mozilla/5.0 "quoted", comma` || col(download, "size") != "" {
			t.Errorf("download row = %q", download)
		}
		if got := col(records[4], "detail"); got != "token ci\r\nsecond line" && got != "token ci\nsecond line" {
			t.Errorf("multi-line detail = %q", got)
		}
	})
}

func TestExportCSVBOM(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		l := exportFixture(t, be)
		out := exportString(t, l, dayRange(t, l, "2026-11-25", "2026-11-25"), FormatCSV, true)
		rest, ok := strings.CutPrefix(out, utf8BOM)
		if !ok {
			t.Fatalf("no BOM: % x", out[:8])
		}
		records, err := csv.NewReader(strings.NewReader(rest)).ReadAll()
		if err != nil || records[0][0] != "seq" {
			t.Fatalf("CSV after BOM: %v %q", err, records[0])
		}
		if err := l.Export(context.Background(), Query{}, &bytes.Buffer{}, FormatJSONL, true); err == nil {
			t.Error("BOM with jsonl accepted")
		}
		if err := l.Export(context.Background(), Query{}, &bytes.Buffer{}, "xml", false); err == nil || !strings.Contains(err.Error(), `"xml"`) {
			t.Errorf("unknown format: %v", err)
		}
	})
}

func TestExportFilters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		l := exportFixture(t, be)
		week := dayRange(t, l, "2026-11-20", "2026-11-30")
		tests := []struct {
			name    string
			change  func(q *Query)
			wantSeq []float64
		}{
			{"whole range", func(q *Query) {}, []float64{1, 2, 3, 4, 5, 6, 7}},
			{"open range", func(q *Query) { *q = Query{} }, []float64{1, 2, 3, 4, 5, 6, 7}},
			{"one type", func(q *Query) { q.Types = []string{string(TypeFileStored)} }, []float64{3}},
			{"two types", func(q *Query) { q.Types = []string{string(TypeDownloadOK), string(TypeMailRelayed)} }, []float64{4, 6}},
			{"type family", func(q *Query) { q.Types = []string{"admin.*"} }, []float64{5}},
			{"mail family", func(q *Query) { q.Types = []string{"mail.*"} }, []float64{1, 2, 6, 7}},
			{"sender without case", func(q *Query) { q.Sender = "alice@example.com" }, []float64{2, 3}},
			{"recipient", func(q *Query) { q.Recipient = "BOB@example.net" }, []float64{2, 3, 6}},
			{"second recipient", func(q *Query) { q.Recipient = "carol@example.org" }, []float64{2}},
			{"recipient not a substring", func(q *Query) { q.Recipient = "bob@example" }, nil},
			{"sender and type", func(q *Query) { q.Sender = "alice@example.com"; q.Types = []string{string(TypeMailReceived)} }, []float64{2}},
			{"from-date starts at local midnight", func(q *Query) { *q = dayRange(t, l, "2026-11-26", "2026-11-26") }, []float64{7}},
			{"to-date ends at local midnight", func(q *Query) { *q = dayRange(t, l, "2026-11-24", "2026-11-24") }, []float64{1}},
			{"dates read in their own zone", func(q *Query) {
				q.From = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
				q.To = q.From
			}, []float64{7}},
			{"future range", func(q *Query) { *q = dayRange(t, l, "2027-01-01", "2027-12-31") }, nil},
			{"far future range", func(q *Query) { *q = dayRange(t, l, "9999-12-31", "9999-12-31") }, nil},
			{"far past range", func(q *Query) { *q = dayRange(t, l, "0001-01-01", "2026-11-24") }, []float64{1}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				q := week
				tt.change(&q)
				var seqs []float64
				for _, m := range decodeJSONL(t, exportString(t, l, q, FormatJSONL, false)) {
					seqs = append(seqs, m["seq"].(float64))
				}
				if !slices.Equal(seqs, tt.wantSeq) {
					t.Errorf("seqs = %v, want %v", seqs, tt.wantSeq)
				}
			})
		}
	})
}

func TestExportFutureRangeIsEmpty(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		l := exportFixture(t, be)
		future := dayRange(t, l, "2030-01-01", "2030-01-31")
		if out := exportString(t, l, future, FormatJSONL, false); out != "" {
			t.Errorf("jsonl = %q, want nothing", out)
		}
		out := exportString(t, l, future, FormatCSV, false)
		if want := strings.Join(csvColumns, ",") + "\r\n"; out != want {
			t.Errorf("csv = %q, want the header only", out)
		}
	})
}

func TestExportCancelled(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		l := exportFixture(t, be)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := l.Export(ctx, Query{}, &bytes.Buffer{}, FormatCSV, false); err == nil {
			t.Error("export with a cancelled context succeeded")
		}
	})
}

// TestSchemaDocMatches keeps SCHEMA.md in step with the code.
func TestSchemaDocMatches(t *testing.T) {
	doc, err := os.ReadFile("SCHEMA.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "\n"+strings.Join(csvColumns, ",")+"\n") {
		t.Error("SCHEMA.md does not list the CSV columns in order")
	}
	for _, typ := range append(TypeNames(), "admin.*") {
		if !strings.Contains(string(doc), "| `"+typ+"` |") {
			t.Errorf("SCHEMA.md has no row for %s", typ)
		}
	}
	for _, col := range csvColumns {
		if !strings.Contains(string(doc), "| "+col+" |") {
			t.Errorf("SCHEMA.md does not describe field %s", col)
		}
	}
}
