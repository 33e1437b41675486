package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/attachgate/attachgate/admin"
	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/config"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

const linksUsage = `usage: attachgate links list|show|revoke -config FILE ...

  list   -config FILE [-sender ADDR] [-recipient ADDR] [-from YYYY-MM-DD] [-to YYYY-MM-DD]
         [-state active|expired|revoked|limit] [-limit N] [-after LINK_ID] [-json]
         links, oldest first: filters as GET /admin/links (dates are local,
         inclusive, of the link's creation); a full page ends with the
         -after value of the next one on stderr
  show   -config FILE LINK_ID    one link's metadata (JSON, as GET /admin/links/{id})
  revoke -config FILE LINK_ID    revoke a link (audited, as the admin API's revoke)

Each call is audited with the actor cli:<user>; it works while serve runs.
`

// linksCLI runs one links subcommand once the store and audit log are
// open.
type linksCLI struct {
	st    store.Store
	log   audit.Log
	loc   *time.Location
	actor string
	out   io.Writer
	err   io.Writer
}

// runLinks is `attachgate links`: the admin's view of links from the
// shell, through the same filters and audit events as the admin API.
func runLinks(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "show" && args[0] != "revoke") {
		fmt.Fprint(stderr, linksUsage)
		return 2
	}
	op := args[0]
	fs := flag.NewFlagSet("links "+op, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	filters := map[string]*string{}
	var asJSON *bool
	if op == "list" {
		for _, name := range admin.LinkListParams {
			filters[name] = fs.String(name, "", "filter: "+name)
		}
		asJSON = fs.Bool("json", false, "one JSON object per line instead of a table")
	}
	// Flags may come before or after the link ID.
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	var positional []string
	for fs.NArg() > 0 {
		positional = append(positional, fs.Arg(0))
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return 2
		}
	}
	wantArgs := 1
	if op == "list" {
		wantArgs = 0
	}
	if *cfgPath == "" || len(positional) != wantArgs {
		fmt.Fprint(stderr, linksUsage)
		return 2
	}
	c, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "attachgate: %v\n", err)
		return 1
	}
	l := &linksCLI{loc: c.Audit.Location(), actor: cliActor(), out: stdout, err: stderr}
	var query url.Values
	if op == "list" {
		// Only the flags given, so "-sender ''" is refused as the API
		// refuses "sender=".
		query = url.Values{}
		fs.Visit(func(f *flag.Flag) {
			if _, ok := filters[f.Name]; ok {
				query.Set(f.Name, f.Value.String())
			}
		})
		if _, err := admin.ParseLinkFilter(query, l.loc, time.Now()); err != nil {
			fmt.Fprintf(stderr, "attachgate links list: -%v\n", err)
			return 2
		}
	} else if !validID(positional[0]) {
		fmt.Fprintf(stderr, "attachgate links %s: %q is not a link ID\n", op, positional[0])
		return 2
	}
	closeAll, err := l.open(c)
	if err != nil {
		fmt.Fprintf(stderr, "attachgate links: %v\n", err)
		return 1
	}
	defer closeAll()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	switch op {
	case "list":
		err = l.list(ctx, query, *asJSON)
	case "show":
		err = l.show(ctx, positional[0])
	default:
		err = l.revoke(ctx, positional[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "attachgate links %s: %v\n", op, err)
		return 1
	}
	return 0
}

func cliActor() string {
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli"
}

// validID accepts what a link ID can look like (as the admin API does).
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-') {
			return false
		}
	}
	return true
}

func (l *linksCLI) open(c *config.Config) (func(), error) {
	if err := vault.SecureDataDir(c.Storage.Dir); err != nil {
		return nil, err
	}
	ring, err := vault.OpenKeyRing(c.Storage.Path("keys"))
	if err != nil {
		return nil, err
	}
	st, al, err := openMetadata(c, ring, nil)
	if err != nil {
		return nil, err
	}
	l.st, l.log = st, al
	return func() { st.Close() }, nil
}

// record audits before anything is shown or changed: a call that cannot
// be recorded is not carried out.
func (l *linksCLI) record(ctx context.Context, e audit.Event) error {
	e.Actor = l.actor
	if err := l.log.Record(ctx, e); err != nil {
		return fmt.Errorf("not done, the audit log refused %s: %w", e.Type, err)
	}
	return nil
}

func (l *linksCLI) list(ctx context.Context, query url.Values, asJSON bool) error {
	now := time.Now()
	f, err := admin.ParseLinkFilter(query, l.loc, now)
	if err != nil {
		return err
	}
	if err := l.record(ctx, audit.Event{Type: admin.TypeLinkList, Detail: "links list " + query.Encode()}); err != nil {
		return err
	}
	views, err := l.st.ListLinks(ctx, f)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(l.out)
		enc.SetEscapeHTML(false)
		for _, v := range views {
			if err := enc.Encode(admin.LinkInfo(v, now, l.loc)); err != nil {
				return err
			}
		}
	} else {
		tw := tabwriter.NewWriter(l.out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "LINK_ID\tSTATE\tCREATED\tEXPIRES\tDOWNLOADS\tSENDER\tRECIPIENTS\tFILE")
		for _, v := range views {
			downloads := strconv.Itoa(v.Link.Downloads)
			if v.Link.MaxDownloads > 0 {
				downloads += "/" + strconv.Itoa(v.Link.MaxDownloads)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Link.ID, v.LinkState(now),
				v.Link.CreatedAt.In(l.loc).Format(time.RFC3339), v.EffectiveExpiry().In(l.loc).Format(time.RFC3339),
				downloads, printable(v.Message.Sender), printable(strings.Join(v.Message.Recipients, ",")), printable(v.File.Name))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(views) == f.Limit {
		fmt.Fprintf(l.err, "more links may follow: add -after %s\n", views[len(views)-1].Link.ID)
	}
	return nil
}

// lookup reads link id and records e about it before anything is shown or
// changed: with the link's fields, or with reason "unknown link".
func (l *linksCLI) lookup(ctx context.Context, e audit.Event, id string) (store.LinkView, error) {
	v, err := l.st.LinkByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		e.Reason = "unknown link"
		if rerr := l.record(ctx, e); rerr != nil {
			return store.LinkView{}, rerr
		}
		return store.LinkView{}, fmt.Errorf("unknown link %s", id)
	}
	if err != nil {
		return store.LinkView{}, err
	}
	if err := l.record(ctx, withLinkFields(e, v)); err != nil {
		return store.LinkView{}, err
	}
	return v, nil
}

func (l *linksCLI) show(ctx context.Context, id string) error {
	v, err := l.lookup(ctx, audit.Event{Type: admin.TypeLinkView, LinkID: id, Detail: "links show"}, id)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(l.out)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(admin.LinkInfo(v, time.Now(), l.loc))
}

// revoke revokes a link as POST /admin/links/{id}/revoke does:
// admin.link.revoke is recorded before the link is touched, link.revoked
// (reason admin) once it is revoked for the first time.
func (l *linksCLI) revoke(ctx context.Context, id string) error {
	e := audit.Event{Type: admin.TypeLinkRevoke, LinkID: id, Detail: "links revoke"}
	before, err := l.lookup(ctx, e, id)
	if err != nil {
		return err
	}
	now := time.Now()
	if err := l.st.RevokeLink(ctx, id, now); err != nil {
		return err
	}
	if !before.Link.RevokedAt.IsZero() {
		fmt.Fprintf(l.out, "link %s was already revoked at %s\n", id, before.Link.RevokedAt.In(l.loc).Format(time.RFC3339))
		return nil
	}
	if err := l.record(ctx, audit.Event{Type: audit.TypeLinkRevoked, FileID: before.File.ID, FileName: before.File.Name,
		LinkID: id, MessageID: before.Message.ID, Reason: "admin"}); err != nil {
		return fmt.Errorf("link revoked and admin.link.revoke recorded, but recording link.revoked failed: %w", err)
	}
	fmt.Fprintf(l.out, "link %s revoked at %s\n", id, now.In(l.loc).Format(time.RFC3339))
	return nil
}

// withLinkFields names the link, file and message concerned, as the admin
// API's events do.
func withLinkFields(e audit.Event, v store.LinkView) audit.Event {
	e.LinkID, e.FileID, e.FileName = v.Link.ID, v.File.ID, v.File.Name
	e.SHA256, e.Size, e.MessageID, e.Expires = v.File.SHA256, v.File.Size, v.Message.ID, v.EffectiveExpiry()
	return e
}
