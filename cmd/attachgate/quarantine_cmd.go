package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/attachgate/attachgate/admin"
	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/bytesize"
	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/metrics"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/quarantine"
	"github.com/attachgate/attachgate/relay"
)

const quarantineUsage = `usage: attachgate quarantine <command> -config FILE [flags] [ID]

  list     -config FILE              held messages, oldest first
  show     -config FILE [-original] ID
                                     envelope, reason, state, header fields and
                                     MIME parts; -original writes the message as
                                     it arrived to stdout instead (audited)
  release  -config FILE ID           send it on now, recipient by recipient
                                     (refused ones bounce to the sender)
  delete   -config FILE ID           remove it; the sender is not told
  reject   -config FILE -reason TEXT ID
                                     remove it and send the sender a DSN saying TEXT

Every command is recorded in the audit log as an admin action of
cli:<OS user> (admin.quarantine.list, .show, .original, .release, .delete,
.reject). It runs beside a serving gateway on the same configuration.
Exit status: 0 done, 1 failed (unknown ID, next hop refused every
recipient, ...), 2 bad arguments.
`

// Admin types of the CLI's own reads (the admin API's release, delete and
// list types are shared).
var (
	typeQuarantineShow     = audit.AdminType("quarantine.show")
	typeQuarantineOriginal = audit.AdminType("quarantine.original")
	typeQuarantineReject   = audit.AdminType("quarantine.reject")
)

// cliReleaseTimeout bounds a release from the command line.
const cliReleaseTimeout = 30 * time.Minute

// runQuarantine is `attachgate quarantine`: held mail from the command line.
func runQuarantine(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, quarantineUsage)
		return 2
	}
	op := args[0]
	switch op {
	case "list", "show", "release", "delete", "reject":
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, quarantineUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "attachgate quarantine: unknown command %q (want list, show, release, delete or reject)\n\n%s", op, quarantineUsage)
		return 2
	}
	fs := flag.NewFlagSet("quarantine "+op, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported below, naming the flag
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	var original *bool
	var reason *string
	if op == "show" {
		original = fs.Bool("original", false, "write the original message to stdout")
	}
	if op == "reject" {
		reason = fs.String("reason", "", "why, for the sender's DSN")
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		fmt.Fprintf(stderr, "attachgate quarantine %s: %v\n\n%s", op, err, quarantineUsage)
		return 2
	}
	switch {
	case *cfgPath == "":
		fmt.Fprintf(stderr, "attachgate quarantine %s: -config FILE is required\n", op)
		return 2
	case op == "list" && len(pos) > 0:
		fmt.Fprintf(stderr, "attachgate quarantine list: unexpected argument %q\n", pos[0])
		return 2
	case op != "list" && len(pos) == 0:
		fmt.Fprintf(stderr, "attachgate quarantine %s: the held message's ID is required\n", op)
		return 2
	case op != "list" && len(pos) > 1:
		fmt.Fprintf(stderr, "attachgate quarantine %s: one ID at a time (got %d arguments)\n", op, len(pos))
		return 2
	case op == "reject" && strings.TrimSpace(*reason) == "":
		fmt.Fprintln(stderr, "attachgate quarantine reject: -reason TEXT is required (the sender reads it in the DSN)")
		return 2
	}
	var id string
	if len(pos) == 1 {
		id = pos[0]
		if !validHeldID(id) {
			fmt.Fprintf(stderr, "attachgate quarantine %s: %q is not a held message ID (a UUID as `list` shows)\n", op, id)
			return 2
		}
	}
	c, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "attachgate: %v\n", err)
		return 1
	}
	q, err := openQuarantineCLI(c, op == "release" || op == "reject", stderr)
	if err != nil {
		fmt.Fprintf(stderr, "attachgate quarantine %s: %v\n", op, err)
		return 1
	}
	defer q.close()
	ctx := context.Background()
	switch op {
	case "list":
		err = q.list(ctx, stdout)
	case "show":
		err = q.show(ctx, id, *original, stdout)
	case "release":
		err = q.release(ctx, id, stdout)
	case "delete":
		err = q.delete(ctx, id, stdout)
	case "reject":
		err = q.reject(ctx, id, *reason, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "attachgate quarantine %s: %v\n", op, err)
		return 1
	}
	return 0
}

// parseInterspersed parses flags before and after positional arguments
// ("show ID -config F" as well as "show -config F ID"); -flag and --flag
// both work.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// validHeldID: held IDs are attachgate message IDs, UUIDs.
func validHeldID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i, r := range id {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if r != '-' {
				return false
			}
		case !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f'):
			return false
		}
	}
	return true
}

// cliQuarantine is the quarantine opened by a command.
type cliQuarantine struct {
	c     *config.Config
	b     *backend
	m     *quarantine.Manager
	audit audit.Recorder
	actor string
	loc   *time.Location
}

// openQuarantineCLI opens the backend and the quarantine beside a possibly
// running daemon: crash leftovers are left to the daemon, and claims keep
// the two from working on one message at once. forRelease (release, reject) also builds the
// pipeline, next hop and notifier a release needs; DSNs are queued in
// storage.dir/notify and sent by the serving gateway.
func openQuarantineCLI(c *config.Config, forRelease bool, stderr io.Writer) (*cliQuarantine, error) {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := openBackend(c, log)
	if err != nil {
		return nil, err
	}
	actor := "cli"
	if u, err := user.Current(); err == nil {
		actor = "cli:" + u.Username
	}
	q := &cliQuarantine{c: c, b: b, audit: b.audit, actor: actor, loc: c.Links.Location()}
	o := quarantine.Options{Dir: c.Storage.Path("quarantine"), Ring: b.ring, Audit: b.audit,
		HoldFor: c.Quarantine.HoldFor.D(), MaxRetryAge: c.Quarantine.MaxRetryAge.D(),
		Retention: c.Quarantine.Retention.D(), Logger: log, KeepLeftovers: true, Usable: b.guard.Check}
	if err := quarantineIndex(b, &o); err != nil {
		b.Close()
		return nil, err
	}
	if forRelease {
		hopTLS, err := nextHopTLS(c)
		if err != nil {
			b.Close()
			return nil, err
		}
		hop := relay.New(c.NextHop.Address, c.SMTP.Hostname, c.NextHop.Timeout.D(), c.NextHop.TLS, hopTLS)
		obs := observe(metrics.New(log), b, hop, log)
		notices, err := openNotifier(c, b, obs, hop, log)
		if err != nil {
			b.Close()
			return nil, err
		}
		o.Hop, o.Notify, o.Audit = obs.hop, notices, obs.audit
		pl := newPipeline(c, b, obs, notices, log)
		// A release from the command line scans as the daemon's would.
		if pl.Scan, err = openScanner(c, log); err != nil {
			b.Close()
			return nil, err
		}
		o.Deliverer = quarantine.Deliver(pl)
	}
	ctx, cancel := context.WithTimeout(context.Background(), backendOpenTimeout)
	defer cancel()
	if q.m, err = quarantine.Open(ctx, o); err != nil {
		b.Close()
		return nil, err
	}
	return q, nil
}

func (q *cliQuarantine) close() { q.b.Close() }

func (q *cliQuarantine) record(ctx context.Context, e audit.Event) error {
	if err := q.audit.Record(ctx, e); err != nil {
		return fmt.Errorf("nothing done: the audit log refused %s: %w", e.Type, err)
	}
	return nil
}

// heldEvent is an admin event of the CLI about it.
func (q *cliQuarantine) heldEvent(typ audit.EventType, it quarantine.Item) audit.Event {
	return audit.Event{Type: typ, Actor: q.actor, MessageID: it.ID, HeaderID: it.HeaderID, Sender: it.From,
		Recipients: it.To, Size: it.Size}
}

// get finds id for the command typ, or says it is not held; a call about
// an unknown ID is recorded too (reason unknown held message), as the
// admin API does.
func (q *cliQuarantine) get(ctx context.Context, typ audit.EventType, id string) (quarantine.Item, error) {
	it, err := q.m.Get(ctx, id)
	if errors.Is(err, quarantine.ErrNotFound) {
		e := audit.Event{Type: typ, Actor: q.actor, MessageID: id, Reason: "unknown held message"}
		if rerr := q.record(ctx, e); rerr != nil {
			return it, rerr
		}
		return it, fmt.Errorf("no held message with ID %s (released, deleted or never held; see `attachgate quarantine list`)", id)
	}
	return it, err
}

func (q *cliQuarantine) time(t time.Time) string { return t.In(q.loc).Format(time.RFC3339) }

// state says what happens next to it.
func (q *cliQuarantine) state(it quarantine.Item) string {
	switch {
	case it.Attempts > 0:
		return fmt.Sprintf("retrying: released by %s, %d failed attempt(s), next %s, given up %s",
			it.ReleasedBy, it.Attempts, q.time(it.ReleaseAt), q.time(it.FirstFailedAt.Add(q.c.Quarantine.MaxRetryAge.D())))
	case it.Action == policies.Hold:
		return "holding until " + q.time(it.ReleaseAt)
	default:
		return fmt.Sprintf("quarantined: waits for an admin (purged %s)", q.time(it.HeldAt.Add(q.c.Quarantine.Retention.D())))
	}
}

func (q *cliQuarantine) list(ctx context.Context, out io.Writer) error {
	if err := q.record(ctx, audit.Event{Type: admin.TypeQuarantineList, Actor: q.actor}); err != nil {
		return err
	}
	items, err := q.m.List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tACTION\tRULE\tHELD\tSIZE\tFROM\tRCPTS\tSTATE")
	for _, it := range items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", it.ID, it.Action, printable(it.Rule), q.time(it.HeldAt),
			bytesize.Human(it.Size), printable(orNull(it.From)), len(it.To), printable(q.state(it)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d held\n", len(items))
	return nil
}

func orNull(addr string) string {
	if addr == "" {
		return "<>"
	}
	return addr
}

func (q *cliQuarantine) show(ctx context.Context, id string, original bool, out io.Writer) error {
	typ := typeQuarantineShow
	if original {
		typ = typeQuarantineOriginal
	}
	it, err := q.get(ctx, typ, id)
	if err != nil {
		return err
	}
	if original {
		// Reading a held message is an admin's decision: on record first.
		if err := q.record(ctx, q.heldEvent(typeQuarantineOriginal, it)); err != nil {
			return err
		}
		_, rd, err := q.m.Original(ctx, id)
		if err != nil {
			return err
		}
		defer rd.Close()
		if _, err := io.Copy(out, rd); err != nil {
			return fmt.Errorf("write the original: %w", err)
		}
		return nil
	}
	if err := q.record(ctx, q.heldEvent(typeQuarantineShow, it)); err != nil {
		return err
	}
	d, err := q.m.Describe(ctx, id)
	if err != nil {
		return err
	}
	it = d.Item
	w := func(format string, a ...any) { fmt.Fprintf(out, format, a...) }
	w("ID:        %s\n", it.ID)
	w("Reason:    policy rule %q, action %s\n", printable(it.Rule), it.Action)
	w("State:     %s\n", printable(q.state(it)))
	w("Held at:   %s\n", q.time(it.HeldAt))
	w("Size:      %s (%d bytes), SHA-256 %s\n", bytesize.Human(it.Size), it.Size, it.SHA256)
	w("Envelope:\n")
	w("  MAIL FROM:<%s>%s\n", printable(it.From), map[bool]string{true: " SMTPUTF8", false: ""}[it.UTF8])
	for _, r := range it.To {
		w("  RCPT TO:<%s>", printable(r))
		if f, ok := it.Failures[r]; ok {
			w("  last refusal: %s", printable(f.Error))
		}
		w("\n")
	}
	w("  client %s, HELO %s, AUTH %s, TLS %v\n", printable(it.ClientAddr), printable(it.Helo), printable(orNone(it.AuthUser)), it.TLS)
	if it.LastError != "" {
		w("Last error: %s\n", printable(it.LastError))
	}
	w("Header:\n")
	for _, f := range d.Header {
		w("  %s: %s\n", printable(f.Key), printable(f.Value))
	}
	w("Parts:\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, p := range d.Parts {
		size := bytesize.Human(p.Size)
		if p.Size < 0 {
			size = "undecodable: " + p.Err
		}
		name := ""
		if p.Name != "" {
			name = fmt.Sprintf("%q", p.Name)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", p.Path, printable(p.ContentType), printable(orNone(p.Disposition)), printable(size), name)
	}
	return tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printable escapes control characters (a header or address chosen by
// whoever sent the mail must not drive the admin's terminal).
func printable(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || r == unicode.ReplacementChar || reorders(r) }) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == unicode.ReplacementChar:
			b.WriteString(`\uFFFD`)
		case unicode.IsControl(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case reorders(r):
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// reorders: line and paragraph separators and the bidirectional overrides
// and isolates, which make a terminal show text in another order than it
// is (a file name "invoice\u202Efdp.exe" reads as "invoiceexe.pdf").
func reorders(r rune) bool {
	return r == '\u2028' || r == '\u2029' || (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}

func (q *cliQuarantine) release(ctx context.Context, id string, out io.Writer) error {
	it, err := q.get(ctx, admin.TypeQuarantineRelease, id)
	if err != nil {
		return err
	}
	if err := q.record(ctx, q.heldEvent(admin.TypeQuarantineRelease, it)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cliReleaseTimeout)
	defer cancel()
	res, err := q.m.Release(ctx, id, q.actor)
	var de *quarantine.DeliveryError
	switch {
	case err == nil, errors.Is(err, quarantine.ErrUnaudited):
	case errors.Is(err, quarantine.ErrNotFound):
		return fmt.Errorf("no held message with ID %s (released or deleted meanwhile)", id)
	case errors.Is(err, quarantine.ErrBusy):
		return fmt.Errorf("%s is being released or deleted right now (by the gateway or another command); look again shortly", id)
	case errors.As(err, &de):
		return fmt.Errorf("the next hop took the message for no recipient; it stays held and is retried: %v", err)
	default:
		return fmt.Errorf("release failed; the message stays held: %v", err)
	}
	if len(res.Delivered) > 0 {
		fmt.Fprintf(out, "delivered to %s: %s\n", strings.Join(res.Delivered, ", "), printable(res.Reply))
	}
	if len(res.Bounced) > 0 {
		fmt.Fprintf(out, "bounced (the sender gets a DSN): %s\n", strings.Join(res.Bounced, ", "))
	}
	if len(res.Pending) > 0 {
		fmt.Fprintf(out, "deferred, still held and retried: %s\n", strings.Join(res.Pending, ", "))
	}
	if errors.Is(err, quarantine.ErrUnaudited) {
		return fmt.Errorf("released, but: %v", err)
	}
	return nil
}

func (q *cliQuarantine) delete(ctx context.Context, id string, out io.Writer) error {
	it, err := q.get(ctx, admin.TypeQuarantineDelete, id)
	if err != nil {
		return err
	}
	if err := q.record(ctx, q.heldEvent(admin.TypeQuarantineDelete, it)); err != nil {
		return err
	}
	if _, err := q.m.Delete(ctx, id, q.actor); err != nil {
		return heldCallFailed(id, "deleted", err)
	}
	fmt.Fprintf(out, "deleted %s (the sender is not told)\n", id)
	return nil
}

func (q *cliQuarantine) reject(ctx context.Context, id, reason string, out io.Writer) error {
	it, err := q.get(ctx, typeQuarantineReject, id)
	if err != nil {
		return err
	}
	e := q.heldEvent(typeQuarantineReject, it)
	e.Reason = reason
	if err := q.record(ctx, e); err != nil {
		return err
	}
	if _, err := q.m.Reject(ctx, id, q.actor, reason); err != nil {
		return heldCallFailed(id, "rejected", err)
	}
	fmt.Fprintf(out, "rejected %s; a DSN to <%s> is queued and sent by the serving gateway\n", id, printable(it.From))
	return nil
}

func heldCallFailed(id, done string, err error) error {
	switch {
	case errors.Is(err, quarantine.ErrUnaudited):
		return fmt.Errorf("%s, but: %v", done, err)
	case errors.Is(err, quarantine.ErrNotFound):
		return fmt.Errorf("no held message with ID %s (released or deleted meanwhile)", id)
	case errors.Is(err, quarantine.ErrBusy):
		return fmt.Errorf("%s is being released or deleted right now; look again shortly", id)
	}
	return err
}
