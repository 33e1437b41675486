package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/attachgate/attachgate/audit"
)

const auditUsage = `usage:
  attachgate audit export -config FILE -from YYYY-MM-DD -to YYYY-MM-DD -format jsonl|csv
                          [-type T[,T]] [-sender ADDR] [-recipient ADDR] [-bom]
  attachgate audit verify -config FILE

export writes the events of the inclusive local-date range to stdout.
verify checks the hash chain and names the first broken event.
Exit status: 0 done, 1 failed (or chain broken), 2 bad arguments.
`

// auditLogOpener opens the audit log of a configuration, whichever backend
// holds it; the func it returns releases the store.
type auditLogOpener func(configPath string) (audit.Log, func(), error)

// runAudit runs "attachgate audit <subcommand> [flags]"; args start at the
// subcommand. It returns the exit status.
func runAudit(args []string, stdout, stderr io.Writer, openLog auditLogOpener) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	switch args[0] {
	case "export":
		return runAuditExport(args[1:], stdout, stderr, openLog)
	case "verify":
		return runAuditVerify(args[1:], stdout, stderr, openLog)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, auditUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "attachgate audit: unknown subcommand %q\n\n%s", args[0], auditUsage)
		return 2
	}
}

// auditTypeList collects -type values: comma-separated, repeatable.
type auditTypeList []string

func (l *auditTypeList) String() string { return strings.Join(*l, ",") }

func (l *auditTypeList) Set(v string) error {
	for _, t := range strings.Split(v, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		// Caught here so a misspelt type fails loudly instead of exporting
		// nothing.
		if !audit.KnownTypeFilter(t) {
			return fmt.Errorf("unknown event type %q (known: %s, admin.*)", t, strings.Join(audit.TypeNames(), ", "))
		}
		*l = append(*l, t)
	}
	return nil
}

// auditFlagSet returns a flag set that reports parse errors and -h on
// stderr, and the -config flag every audit subcommand takes.
func auditFlagSet(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("attachgate audit "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "configuration `FILE` (required)")
	return fs, configPath
}

// parseAuditFlags parses args and returns the exit status to stop with, or
// -1 to go on.
func parseAuditFlags(fs *flag.FlagSet, args []string, configPath *string, stderr io.Writer) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2 // the flag package has printed the problem and the usage
	}
	switch {
	case fs.NArg() > 0:
		return auditArgError(stderr, fs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	case *configPath == "":
		return auditArgError(stderr, fs, errors.New("-config: missing, want the configuration file"))
	}
	return -1
}

func auditArgError(stderr io.Writer, fs *flag.FlagSet, err error) int {
	fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
	fmt.Fprintf(stderr, "run '%s -h' for usage\n", fs.Name())
	return 2
}

func runAuditExport(args []string, stdout, stderr io.Writer, openLog auditLogOpener) int {
	fs, configPath := auditFlagSet("export", stderr)
	from := fs.String("from", "", "first local `date` to export, YYYY-MM-DD (required)")
	to := fs.String("to", "", "last local `date` to export, YYYY-MM-DD, inclusive (required)")
	format := fs.String("format", "", "output `format`: jsonl or csv (required)")
	var types auditTypeList
	fs.Var(&types, "type", "only events of these `types`, comma-separated; admin.* for all admin actions")
	sender := fs.String("sender", "", "only events whose envelope sender is `ADDR`")
	recipient := fs.String("recipient", "", "only events with recipient `ADDR`")
	bom := fs.Bool("bom", false, "start the CSV with a UTF-8 byte order mark, for Excel")
	if code := parseAuditFlags(fs, args, configPath, stderr); code >= 0 {
		return code
	}
	if *format != audit.FormatJSONL && *format != audit.FormatCSV {
		if *format == "" {
			return auditArgError(stderr, fs, errors.New("-format: missing, want jsonl or csv"))
		}
		return auditArgError(stderr, fs, fmt.Errorf("-format: want jsonl or csv, got %q", *format))
	}
	if *bom && *format != audit.FormatCSV {
		return auditArgError(stderr, fs, errors.New("-bom: applies to -format csv only"))
	}
	// Dates are checked before the store is opened; the zone matters only
	// for the day boundaries, which come from the log's Location below.
	if _, err := audit.ParseDateRange(*from, *to, time.UTC); err != nil {
		return auditArgError(stderr, fs, err)
	}

	log, closeLog, err := openLog(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "%s: open audit log: %v\n", fs.Name(), err)
		return 1
	}
	defer closeLog()
	q, err := audit.ParseDateRange(*from, *to, log.Location())
	if err != nil {
		return auditArgError(stderr, fs, err)
	}
	q.Types = types
	q.Sender = bareAddress(*sender)
	q.Recipient = bareAddress(*recipient)
	if err := log.Export(context.Background(), q, stdout, *format, *bom); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return 1
	}
	return 0
}

func runAuditVerify(args []string, stdout, stderr io.Writer, openLog auditLogOpener) int {
	fs, configPath := auditFlagSet("verify", stderr)
	if code := parseAuditFlags(fs, args, configPath, stderr); code >= 0 {
		return code
	}
	log, closeLog, err := openLog(*configPath)
	if err != nil {
		fmt.Fprintf(stderr, "%s: open audit log: %v\n", fs.Name(), err)
		return 1
	}
	defer closeLog()
	res, err := log.Verify(context.Background(), stdout)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return 1
	}
	if !res.OK() {
		fmt.Fprintf(stderr, "%s: chain broken at %s\n", fs.Name(), res.Break)
		return 1
	}
	return 0
}

// bareAddress accepts an address as pasted from a header: "<a@b>" and
// "a@b" select the same events.
func bareAddress(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		s = s[1 : len(s)-1]
	}
	return s
}
