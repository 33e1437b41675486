package admin

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/attachgate/attachgate/audit"
)

// exportParams are the known query parameters of GET /admin/audit.
var exportParams = []string{"from", "to", "format", "type", "sender", "recipient", "bom"}

// exportRequest is a checked GET /admin/audit query.
type exportRequest struct {
	query    audit.Query
	from, to string // as given, YYYY-MM-DD
	format   string
	bom      bool
}

// handleAuditExport streams the audit events of an inclusive local-date
// range as JSON lines or CSV, the same export as "attachgate audit export".
// The call is recorded before the first byte goes out, so it shows in an
// export that covers today.
func (s *Server) handleAuditExport(w http.ResponseWriter, r *http.Request, c caller) {
	e := c.event(TypeAuditExport, r)
	req, err := parseExportRequest(r.URL.Query(), s.location)
	if !s.recordCall(w, r, e, err) {
		return
	}

	ext, contentType := "jsonl", "application/x-ndjson"
	if req.format == audit.FormatCSV {
		ext, contentType = "csv", "text/csv; charset=utf-8"
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="audit-%s-%s.%s"`, req.from, req.to, ext))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}

	out := &startedWriter{w: w}
	err = s.export.Export(r.Context(), req.query, out, req.format, req.bom)
	switch {
	case err == nil:
		return
	case r.Context().Err() != nil:
		s.log.Debug("admin: audit export cut short by the client", "actor", c.actor(), "err", err)
	case !out.started:
		s.log.Error("admin: audit export failed", "actor", c.actor(), "err", err)
		w.Header().Set("Retry-After", retryAfter)
		writeError(w, http.StatusServiceUnavailable, "audit export failed")
	default:
		// The status line is gone; cutting the connection is the only way
		// to tell the client the file is incomplete.
		s.log.Error("admin: audit export failed mid-stream", "actor", c.actor(), "err", err)
		panic(http.ErrAbortHandler)
	}
}

// startedWriter remembers whether anything was written.
type startedWriter struct {
	w       io.Writer
	started bool
}

func (s *startedWriter) Write(p []byte) (int, error) {
	s.started = true
	return s.w.Write(p)
}

// parseExportRequest checks the query of GET /admin/audit. Errors name the
// parameter at fault.
func parseExportRequest(v url.Values, loc *time.Location) (exportRequest, error) {
	if err := refuseUnknownParams(v, exportParams); err != nil {
		return exportRequest{}, err
	}
	single := func(name string) (string, error) {
		if len(v[name]) > 1 {
			return "", fmt.Errorf("%s: given %d times, want once", name, len(v[name]))
		}
		return v.Get(name), nil
	}
	var req exportRequest
	var err error
	if req.from, err = single("from"); err != nil {
		return exportRequest{}, err
	}
	if req.to, err = single("to"); err != nil {
		return exportRequest{}, err
	}
	fromDate, err := parseDateParam("from", req.from, loc)
	if err != nil {
		return exportRequest{}, err
	}
	toDate, err := parseDateParam("to", req.to, loc)
	if err != nil {
		return exportRequest{}, err
	}
	if fromDate.After(toDate) {
		return exportRequest{}, fmt.Errorf("from: %s is after to %s", req.from, req.to)
	}
	// The same parser as the CLI builds the query, so both agree on what
	// a date range means.
	if req.query, err = audit.ParseDateRange(req.from, req.to, loc); err != nil {
		return exportRequest{}, fmt.Errorf("from/to: %w", err)
	}

	if req.format, err = single("format"); err != nil {
		return exportRequest{}, err
	}
	switch req.format {
	case audit.FormatJSONL, audit.FormatCSV:
	case "":
		return exportRequest{}, errors.New("format: missing, want jsonl or csv")
	default:
		return exportRequest{}, fmt.Errorf("format: want jsonl or csv, got %q", req.format)
	}

	for _, list := range v["type"] {
		for _, t := range strings.Split(list, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			// A misspelt type fails loudly instead of exporting nothing.
			if !audit.KnownTypeFilter(t) {
				return exportRequest{}, fmt.Errorf("type: unknown event type %q (known: %s, admin.*)", t, strings.Join(audit.TypeNames(), ", "))
			}
			req.query.Types = append(req.query.Types, t)
		}
	}
	if req.query.Sender, err = single("sender"); err != nil {
		return exportRequest{}, err
	}
	if req.query.Recipient, err = single("recipient"); err != nil {
		return exportRequest{}, err
	}

	bom, err := single("bom")
	if err != nil {
		return exportRequest{}, err
	}
	switch bom {
	case "", "0", "false":
	case "1", "true":
		req.bom = true
	default:
		return exportRequest{}, fmt.Errorf("bom: want 1 or 0, got %q", bom)
	}
	if req.bom && req.format != audit.FormatCSV {
		return exportRequest{}, errors.New("bom: applies to format=csv only")
	}
	return req, nil
}

// parseDateParam reads a YYYY-MM-DD parameter.
func parseDateParam(name, value string, loc *time.Location) (time.Time, error) {
	if value == "" {
		return time.Time{}, fmt.Errorf("%s: missing, want YYYY-MM-DD", name)
	}
	d, err := time.ParseInLocation("2006-01-02", value, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: want YYYY-MM-DD, got %q", name, value)
	}
	return d, nil
}
