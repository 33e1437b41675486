package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Export formats.
const (
	FormatJSONL = "jsonl"
	FormatCSV   = "csv"
)

// utf8BOM lets Excel recognise a CSV file as UTF-8 (Japanese file names
// otherwise turn into mojibake).
const utf8BOM = "\xEF\xBB\xBF"

// csvColumns is the CSV header and column order, also the key order of a
// JSONL line. Part of the export contract (SCHEMA.md): append only.
var csvColumns = []string{
	"seq", "time", "type", "actor", "client_addr", "user_agent",
	"auth_user", "helo", "message_id", "header_id", "sender", "recipients",
	"size", "file_id", "file_name", "content_type", "sha256", "link_id",
	"expires", "reason", "reply", "detail", "prev_hash", "hash",
}

// CSVColumns returns the CSV header in column order.
func CSVColumns() []string { return append([]string(nil), csvColumns...) }

// Query selects events to export. Every set field narrows the selection.
type Query struct {
	// From and To are inclusive local dates. Only their calendar date
	// counts (as read in their own location); the day boundaries are taken
	// in the log's Location: from 00:00 of From to 24:00 of To. A zero
	// value leaves that end open.
	From, To time.Time
	// Types are event types; an entry ending in ".*" ("admin.*") matches
	// the whole family.
	Types []string
	// Sender and Recipient match an address exactly, ASCII letters
	// compared without case.
	Sender, Recipient string
}

const dateLayout = "2006-01-02"

// ParseDateRange parses the -from and -to arguments (YYYY-MM-DD, both
// required, from not after to) into a Query for that inclusive range of
// dates in loc (time.Local when nil). Errors name the flag at fault.
func ParseDateRange(from, to string, loc *time.Location) (Query, error) {
	if loc == nil {
		loc = time.Local
	}
	fromDate, err := parseDate("-from", from, loc)
	if err != nil {
		return Query{}, err
	}
	toDate, err := parseDate("-to", to, loc)
	if err != nil {
		return Query{}, err
	}
	if fromDate.After(toDate) {
		return Query{}, fmt.Errorf("-from %s is after -to %s", from, to)
	}
	return Query{From: fromDate, To: toDate}, nil
}

func parseDate(flagName, value string, loc *time.Location) (time.Time, error) {
	if value == "" {
		return time.Time{}, fmt.Errorf("%s: missing, want YYYY-MM-DD", flagName)
	}
	d, err := time.ParseInLocation(dateLayout, value, loc)
	if err != nil {
		// time's own message ("month out of range") adds little for a
		// script author; the expected form says it all.
		return time.Time{}, fmt.Errorf("%s: want YYYY-MM-DD, got %q", flagName, value)
	}
	return d, nil
}

// exportSQL builds the filtered, seq-ordered select for q.
func (l *SQLiteLog) exportSQL(q Query) (string, []any) {
	var where []string
	var args []any
	if !q.From.IsZero() {
		where = append(where, "time_ns >= ?")
		args = append(args, clampNanos(l.dayStart(q.From, 0)))
	}
	if !q.To.IsZero() {
		where = append(where, "time_ns < ?")
		args = append(args, clampNanos(l.dayStart(q.To, 1)))
	}
	var typeConds []string
	for _, t := range q.Types {
		if t == "" {
			continue
		}
		if prefix, isFamily := strings.CutSuffix(t, "*"); isFamily {
			typeConds = append(typeConds, "substr(type, 1, length(?)) = ?")
			args = append(args, prefix, prefix)
			continue
		}
		typeConds = append(typeConds, "type = ?")
		args = append(args, t)
	}
	if len(typeConds) > 0 {
		where = append(where, "("+strings.Join(typeConds, " OR ")+")")
	}
	if q.Sender != "" {
		where = append(where, "sender = ? COLLATE NOCASE")
		args = append(args, q.Sender)
	}
	if q.Recipient != "" {
		where = append(where, `EXISTS (SELECT 1 FROM json_each(audit_events.recipients) AS r
			WHERE r.value = ? COLLATE NOCASE)`)
		args = append(args, q.Recipient)
	}
	// With a date range SQLite reads the time index and sorts by seq in its
	// own sorter, which spills to temporary files beyond cache_size: memory
	// stays bounded either way.
	query := "SELECT " + eventColumns + " FROM audit_events"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	return query + " ORDER BY seq", args
}

// Export writes the events q selects, in seq order, to w as "jsonl" (one
// JSON object per line, empty fields left out) or "csv" (a header row, then
// the columns of CSVColumns, recipients joined by spaces). Times are RFC
// 3339 in the log's Location. bom puts a UTF-8 byte order mark before a CSV
// for Excel; it is an error with jsonl, where it would break line parsers.
// Rows are streamed: memory does not grow with the number of events.
func (l *SQLiteLog) Export(ctx context.Context, q Query, w io.Writer, format string, bom bool) error {
	return writeExport(w, format, bom, l.loc, func(emit func(*storedRow) error) error {
		query, args := l.exportSQL(q)
		rows, err := l.db.QueryContext(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("query: %w", err)
		}
		defer rows.Close()
		var row storedRow
		var n int64
		for rows.Next() {
			if err := rows.Scan(row.scanDest()...); err != nil {
				return fmt.Errorf("read event after %d rows: %w", n, err)
			}
			if err := emit(&row); err != nil {
				return err
			}
			n++
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read events after %d rows: %w", n, err)
		}
		return nil
	})
}

// writeExport writes the export document around the rows that rows hands
// to emit, in order. Both backends share it, so their output is the same
// byte for byte.
func writeExport(w io.Writer, format string, bom bool, loc *time.Location, rows func(emit func(*storedRow) error) error) error {
	var out rowWriter
	bw := bufio.NewWriterSize(w, 64<<10)
	switch format {
	case FormatJSONL:
		if bom {
			return errors.New("audit: export: a byte order mark applies to csv only")
		}
		out = newJSONLWriter(bw, loc)
	case FormatCSV:
		if bom {
			if _, err := bw.WriteString(utf8BOM); err != nil {
				return fmt.Errorf("audit: export: write: %w", err)
			}
		}
		out = newCSVWriter(bw, loc)
	default:
		return fmt.Errorf("audit: export: unknown format %q, want jsonl or csv", format)
	}
	if err := out.begin(); err != nil {
		return fmt.Errorf("audit: export: write header: %w", err)
	}
	err := rows(func(row *storedRow) error {
		if err := out.write(row); err != nil {
			return fmt.Errorf("seq %d: %w", row.Seq, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("audit: export: %w", err)
	}
	if err := out.end(); err != nil {
		return fmt.Errorf("audit: export: write: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("audit: export: write: %w", err)
	}
	return nil
}

// rowFilter is Query as a predicate on stored rows, for backends without a
// query language. It selects exactly what exportSQL selects.
type rowFilter struct {
	fromNS, toNS int64 // [fromNS, toNS)
	types        []string
	families     []string // prefixes of "x.*" entries
	sender       string
	recipient    string
	recipients   []string // decode buffer
}

func (l *settings) newRowFilter(q Query) *rowFilter {
	f := &rowFilter{fromNS: math.MinInt64, toNS: math.MaxInt64, sender: q.Sender, recipient: q.Recipient}
	if !q.From.IsZero() {
		f.fromNS = clampNanos(l.dayStart(q.From, 0))
	}
	if !q.To.IsZero() {
		f.toNS = clampNanos(l.dayStart(q.To, 1))
	}
	for _, t := range q.Types {
		if t == "" {
			continue
		}
		if prefix, isFamily := strings.CutSuffix(t, "*"); isFamily {
			f.families = append(f.families, prefix)
			continue
		}
		f.types = append(f.types, t)
	}
	return f
}

func (f *rowFilter) match(r *storedRow) (bool, error) {
	if r.TimeNS < f.fromNS || (f.toNS != math.MaxInt64 && r.TimeNS >= f.toNS) {
		return false, nil
	}
	if len(f.types) > 0 || len(f.families) > 0 {
		ok := slices.Contains(f.types, r.Type)
		for _, prefix := range f.families {
			ok = ok || strings.HasPrefix(r.Type, prefix)
		}
		if !ok {
			return false, nil
		}
	}
	if f.sender != "" && !asciiEqualFold(r.Sender, f.sender) {
		return false, nil
	}
	if f.recipient != "" {
		var err error
		if f.recipients, err = r.decodeRecipients(f.recipients); err != nil {
			return false, err
		}
		if !slices.ContainsFunc(f.recipients, func(rcpt string) bool { return asciiEqualFold(rcpt, f.recipient) }) {
			return false, nil
		}
	}
	return true, nil
}

// asciiEqualFold compares as SQLite's NOCASE does: ASCII letters without
// case, every other byte exactly.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

type rowWriter interface {
	begin() error
	write(r *storedRow) error
	end() error
}

func exportTime(ns int64, loc *time.Location) string {
	return time.Unix(0, ns).In(loc).Format(time.RFC3339)
}

func exportExpires(canonical string, loc *time.Location) (string, error) {
	if canonical == "" {
		return "", nil
	}
	t, err := time.Parse(time.RFC3339Nano, canonical)
	if err != nil {
		return "", fmt.Errorf("expires column: %w", err)
	}
	return t.In(loc).Format(time.RFC3339), nil
}

// jsonRecord is one JSONL line; keys follow csvColumns.
type jsonRecord struct {
	Seq         int64           `json:"seq"`
	Time        string          `json:"time"`
	Type        string          `json:"type"`
	Actor       string          `json:"actor,omitempty"`
	ClientAddr  string          `json:"client_addr,omitempty"`
	UserAgent   string          `json:"user_agent,omitempty"`
	AuthUser    string          `json:"auth_user,omitempty"`
	Helo        string          `json:"helo,omitempty"`
	MessageID   string          `json:"message_id,omitempty"`
	HeaderID    string          `json:"header_id,omitempty"`
	Sender      string          `json:"sender,omitempty"`
	Recipients  json.RawMessage `json:"recipients,omitempty"`
	Size        int64           `json:"size,omitempty"`
	FileID      string          `json:"file_id,omitempty"`
	FileName    string          `json:"file_name,omitempty"`
	ContentType string          `json:"content_type,omitempty"`
	SHA256      string          `json:"sha256,omitempty"`
	LinkID      string          `json:"link_id,omitempty"`
	Expires     string          `json:"expires,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	Reply       string          `json:"reply,omitempty"`
	Detail      string          `json:"detail,omitempty"`
	PrevHash    string          `json:"prev_hash,omitempty"`
	Hash        string          `json:"hash"`
}

type jsonlWriter struct {
	enc *json.Encoder
	loc *time.Location
	rec jsonRecord
}

func newJSONLWriter(w io.Writer, loc *time.Location) *jsonlWriter {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // addresses like <a@example.com> stay readable
	return &jsonlWriter{enc: enc, loc: loc}
}

func (j *jsonlWriter) begin() error { return nil }
func (j *jsonlWriter) end() error   { return nil }

func (j *jsonlWriter) write(r *storedRow) error {
	expires, err := exportExpires(r.Expires, j.loc)
	if err != nil {
		return err
	}
	// The stored JSON array goes out as is: no decode, no re-encode.
	recipients := json.RawMessage(r.Recipients)
	if string(r.Recipients) == "[]" {
		recipients = nil
	}
	j.rec = jsonRecord{
		Seq: r.Seq, Time: exportTime(r.TimeNS, j.loc), Type: r.Type,
		Actor: r.Actor, ClientAddr: r.ClientAddr, UserAgent: r.UserAgent,
		AuthUser: r.AuthUser, Helo: r.Helo, MessageID: r.MessageID,
		HeaderID: r.HeaderID, Sender: r.Sender, Recipients: recipients,
		Size: r.Size, FileID: r.FileID, FileName: r.FileName,
		ContentType: r.ContentType, SHA256: r.SHA256, LinkID: r.LinkID,
		Expires: expires, Reason: r.Reason, Reply: r.Reply, Detail: r.Detail,
		PrevHash: r.PrevHash, Hash: r.Hash,
	}
	return j.enc.Encode(&j.rec)
}

// csvWriter ends records with CRLF (RFC 4180, what Excel writes itself)
// but keeps every CR inside a cell. encoding/csv's UseCRLF would drop a
// CR that is not followed by LF (found by FuzzExport: a detail "0\r" was
// exported as "0"), so each record is formatted with LF line ends into
// buf, and only its final LF, the record's end, becomes CRLF.
type csvWriter struct {
	out        io.Writer
	buf        bytes.Buffer
	w          *csv.Writer // writes into buf
	loc        *time.Location
	record     []string
	recipients []string
}

func newCSVWriter(w io.Writer, loc *time.Location) *csvWriter {
	c := &csvWriter{out: w, loc: loc, record: make([]string, len(csvColumns))}
	c.w = csv.NewWriter(&c.buf)
	return c
}

func (c *csvWriter) begin() error { return c.writeRecord(csvColumns) }

func (c *csvWriter) end() error { return nil }

// writeRecord writes one record ending in CRLF.
func (c *csvWriter) writeRecord(rec []string) error {
	c.buf.Reset()
	if err := c.w.Write(rec); err != nil {
		return err
	}
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return err
	}
	b := c.buf.Bytes()
	b = append(b[:len(b)-1], '\r', '\n') // the record's own LF
	_, err := c.out.Write(b)
	return err
}

func (c *csvWriter) write(r *storedRow) error {
	expires, err := exportExpires(r.Expires, c.loc)
	if err != nil {
		return err
	}
	if c.recipients, err = r.decodeRecipients(c.recipients); err != nil {
		return err
	}
	size := ""
	if r.Size != 0 {
		size = strconv.FormatInt(r.Size, 10) // blank like every other unset field
	}
	rec := c.record
	rec[0] = strconv.FormatInt(r.Seq, 10)
	rec[1] = exportTime(r.TimeNS, c.loc)
	rec[2] = r.Type
	rec[3] = r.Actor
	rec[4] = r.ClientAddr
	rec[5] = r.UserAgent
	rec[6] = r.AuthUser
	rec[7] = r.Helo
	rec[8] = r.MessageID
	rec[9] = r.HeaderID
	rec[10] = r.Sender
	rec[11] = strings.Join(c.recipients, " ")
	rec[12] = size
	rec[13] = r.FileID
	rec[14] = r.FileName
	rec[15] = r.ContentType
	rec[16] = r.SHA256
	rec[17] = r.LinkID
	rec[18] = expires
	rec[19] = r.Reason
	rec[20] = r.Reply
	rec[21] = r.Detail
	rec[22] = r.PrevHash
	rec[23] = r.Hash
	for i, cell := range rec {
		rec[i] = neutraliseCell(cell)
	}
	return c.writeRecord(rec)
}

// neutraliseCell keeps a spreadsheet from reading a cell as a formula
// (OWASP's rule for CSV injection): a cell starting with =, +, -, @, tab
// or CR gets a leading apostrophe, which spreadsheets take as "text" and
// do not show. File names, User-Agents, HELO names, AUTH identities and
// addresses are chosen by whoever sends mail or fetches a link, so
// =HYPERLINK(...) in a file name must not become a live link in the
// auditor's spreadsheet. JSONL keeps every value verbatim.
func neutraliseCell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}
