package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/redistest"
	"github.com/attachgate/attachgate/smtptest"
)

var heldIDRE = regexp.MustCompile(`(?m)^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\s`)

// heldIDs runs `quarantine list` and returns the IDs it shows.
func heldIDs(t *testing.T, d *daemon) []string {
	t.Helper()
	out, errOut, code := runCLI(t, "quarantine", "list", "-config", d.config)
	if code != 0 {
		t.Fatalf("quarantine list: exit %d: %s", code, errOut)
	}
	var ids []string
	for _, m := range heldIDRE.FindAllStringSubmatch(out, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// TestQuarantineCommand is issue 12 part 5 from the command line, beside a
// serving daemon: list, show, show -original, release (per recipient:
// ok@ gets it, reject-me@ bounces to the sender), delete and reject, each
// audited as cli:<user>, with bad arguments refused by name.
func TestQuarantineCommand(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, `policies:
  - name: quarantine-zip
    match: {extensions: [".zip"]}
    action: quarantine
`)
	first := mailWithAttachment("archive.zip", []byte("zip content one"))
	if err := d.send("alice@example.com", []string{"ok@example.net", "reject-me@example.net"}, first); err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"bob@example.net", "carol@example.net"} {
		if err := d.send("alice@example.com", []string{to}, mailWithAttachment("archive.zip", []byte("zip for "+to))); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(hop.Messages()); n != 0 {
		t.Fatalf("next hop got %d messages before any release", n)
	}
	// By the time of the release, the next hop no longer knows reject-me@.
	hop.SetBehaviour(smtptest.Behaviour{RejectRcpt: map[string]*smtp.SMTPError{
		"reject-me@example.net": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}}})
	out, _, code := runCLI(t, "quarantine", "list", "--config", d.config)
	ids := heldIDs(t, d)
	if code != 0 || len(ids) != 3 || !strings.Contains(out, "quarantine-zip") || !strings.Contains(out, "quarantined: waits for an admin") ||
		!strings.Contains(out, "3 held") {
		t.Fatalf("list (exit %d):\n%s", code, out)
	}
	a, b, c := ids[0], ids[1], ids[2]

	// show: envelope, reason, header, parts; flags after the ID work too.
	out, errOut, code := runCLI(t, "quarantine", "show", a, "-config", d.config)
	if code != 0 {
		t.Fatalf("show: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"ID:        " + a, `Reason:    policy rule "quarantine-zip", action quarantine`,
		"MAIL FROM:<alice@example.com>", "RCPT TO:<ok@example.net>", "RCPT TO:<reject-me@example.net>",
		"  Subject: files", "text/plain", "application/pdf", "attachment", `"archive.zip"`, "15 B"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "zip content one") {
		t.Errorf("show printed a part's content:\n%s", out)
	}
	// show -original: the message itself.
	out, errOut, code = runCLI(t, "quarantine", "show", "-original", "-config", d.config, a)
	if code != 0 || !bytes.Contains([]byte(out), first[bytes.Index(first, []byte("Subject: files")):]) {
		t.Fatalf("show -original: exit %d (%s):\n%s", code, errOut, out)
	}

	// release: per recipient.
	out, errOut, code = runCLI(t, "quarantine", "release", "-config", d.config, a)
	if code != 0 || !strings.Contains(out, "delivered to ok@example.net: 250") ||
		!strings.Contains(out, "bounced (the sender gets a DSN): reject-me@example.net") {
		t.Fatalf("release: exit %d (%s):\n%s", code, errOut, out)
	}
	var delivered []smtptest.Message
	for _, m := range hop.Messages() {
		if m.From != "" {
			delivered = append(delivered, m)
		}
	}
	if len(delivered) != 1 || !slices.Equal(delivered[0].To, []string{"ok@example.net"}) {
		t.Fatalf("next hop got %+v, want the release to ok@ only", delivered)
	}
	// The DSN is queued by the command and sent by the daemon.
	var dsn *smtptest.Message
	waitUntil(t, "the DSN to the sender", func() bool {
		for _, m := range hop.Messages() {
			if m.From == "" && slices.Equal(m.To, []string{"alice@example.com"}) {
				dsn = &m
				return true
			}
		}
		return false
	})
	if s := string(dsn.Data); !strings.Contains(s, "multipart/report") || !strings.Contains(s, "550 5.1.1 No such user") {
		t.Errorf("DSN:\n%s", s)
	}

	// delete, reject.
	if out, errOut, code = runCLI(t, "quarantine", "delete", "-config", d.config, b); code != 0 || !strings.Contains(out, "deleted "+b) {
		t.Fatalf("delete: exit %d (%s): %s", code, errOut, out)
	}
	if _, errOut, code = runCLI(t, "quarantine", "reject", "-config", d.config, c); code != 2 || !strings.Contains(errOut, "-reason") {
		t.Errorf("reject without -reason: exit %d: %s", code, errOut)
	}
	if out, errOut, code = runCLI(t, "quarantine", "reject", "-config", d.config, "-reason", "Wrong customer", c); code != 0 {
		t.Fatalf("reject: exit %d (%s): %s", code, errOut, out)
	}
	if ids := heldIDs(t, d); len(ids) != 0 {
		t.Errorf("still held: %v", ids)
	}
	waitUntil(t, "the rejection's DSN", func() bool {
		n := 0
		for _, m := range hop.Messages() {
			if m.From == "" && strings.Contains(string(m.Data), "Wrong customer") {
				n++
			}
		}
		return n == 1
	})

	// Bad arguments and unknown IDs.
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"quarantine"}, 2, "usage: attachgate quarantine"},
		{[]string{"quarantine", "frob", "-config", d.config}, 2, `unknown command "frob"`},
		{[]string{"quarantine", "list"}, 2, "-config FILE is required"},
		{[]string{"quarantine", "list", "-config", d.config, "-bogus"}, 2, "-bogus"},
		{[]string{"quarantine", "list", "-config", d.config, "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"quarantine", "show", "-config", d.config}, 2, "ID is required"},
		{[]string{"quarantine", "show", "-config", d.config, "../../etc/passwd"}, 2, "not a held message ID"},
		{[]string{"quarantine", "release", "-config", d.config, a, b}, 2, "one ID at a time"},
		{[]string{"quarantine", "release", "-config", d.config, a}, 1, "no held message with ID " + a},
		{[]string{"quarantine", "show", "-config", d.config, b}, 1, "no held message with ID " + b},
		{[]string{"quarantine", "delete", "-config", "/nonexistent.yaml", a}, 1, "nonexistent.yaml"},
	} {
		_, errOut, code := runCLI(t, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d naming %q", tt.args[1:], code, errOut, tt.code, tt.want)
		}
	}

	// Audited as admin actions of cli:<user>, next to the mail events.
	counts := map[string]int{}
	for _, ev := range exportEvents(t, d) {
		typ, _ := ev["type"].(string)
		counts[typ]++
		if strings.HasPrefix(typ, "admin.quarantine.") {
			if actor, _ := ev["actor"].(string); !strings.HasPrefix(actor, "cli:") {
				t.Errorf("%s by %q, want cli:<user>", typ, actor)
			}
		}
		if typ == "mail.released" {
			if rc, _ := ev["recipients"].([]any); len(rc) != 1 || rc[0] != "ok@example.net" {
				t.Errorf("mail.released recipients %v", ev["recipients"])
			}
		}
	}
	// The calls about unknown IDs above are on record too (release a, show b).
	for typ, want := range map[string]int{"admin.quarantine.show": 2, "admin.quarantine.original": 1,
		"admin.quarantine.release": 2, "admin.quarantine.delete": 1, "admin.quarantine.reject": 1,
		"mail.released": 1, "mail.bounced": 1, "mail.deleted": 1, "mail.rejected": 1} {
		if counts[typ] != want {
			t.Errorf("%d %s events, want %d (all: %v)", counts[typ], typ, want, counts)
		}
	}
	if counts["admin.quarantine.list"] < 3 {
		t.Errorf("%d admin.quarantine.list events", counts["admin.quarantine.list"])
	}
}

func TestPrintableEscapesControls(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"plain", "plain"},
		{"日本語の件名", "日本語の件名"},
		{"\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"a\rb\nc\td", `a\x0db\x0ac\x09d`},
		{"bad\xffbyte", `bad\uFFFDbyte`},
		{"\u009b31m", `\x9b31m`},
		{"invoice\u202efdp.exe", `invoice\u202Efdp.exe`},
		{"line\u2028break", `line\u2028break`},
	} {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestTwoInstancesReleaseHeldMailOnce is issue 12 part 5 on Redis: two
// gateways share held mail; each message held for a timed release goes
// out exactly once, whichever instance held it, and the command line on
// either instance sees the same held mail.
func TestTwoInstancesReleaseHeldMailOnce(t *testing.T) {
	srv := redistest.Start(t)
	// A slow next hop keeps each release in flight while the other
	// instance's timer looks at the same due message.
	hop := smtptest.NewServer(t, smtptest.Behaviour{HangAtDataEnd: 300 * time.Millisecond})
	storage := filepath.Join(t.TempDir(), "shared")
	held := `policies:
  - name: hold-zip
    match: {extensions: [".zip"]}
    action: hold
quarantine:
  hold_for: "3s"
`
	a, _ := startRedisInstanceExtra(t, hop.Addr, storage, srv.URL(), held)
	b, _ := startRedisInstanceExtra(t, hop.Addr, storage, srv.URL(), held)
	const n = 4
	for i := 0; i < n; i++ {
		d := []*daemon{a, b}[i%2]
		if err := d.send("alice@example.com", []string{fmt.Sprintf("r%d@example.net", i)},
			mailWithAttachment("archive.zip", []byte(fmt.Sprintf("zip %d", i)))); err != nil {
			t.Fatal(err)
		}
	}
	if ids := heldIDs(t, b); len(ids) != n && len(hop.Messages()) == 0 {
		t.Errorf("instance b lists %d held messages, want all %d", len(ids), n)
	}
	waitUntil(t, "every held message released", func() bool {
		return len(heldIDs(t, a)) == 0
	})
	got := map[string]int{}
	for _, m := range hop.Messages() {
		got[strings.Join(m.To, ",")]++
	}
	for i := 0; i < n; i++ {
		if c := got[fmt.Sprintf("r%d@example.net", i)]; c != 1 {
			t.Errorf("r%d@ got the message %d times, want once (next hop: %v)", i, c, got)
		}
	}
	released := 0
	for _, ev := range exportEvents(t, a) {
		if ev["type"] == "mail.released" {
			released++
		}
	}
	if released != n {
		t.Errorf("%d mail.released events, want %d", released, n)
	}
}
