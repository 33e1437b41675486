package main

import (
	"encoding/json"
	"net/http"
	"os/user"
	"strings"
	"testing"

	"github.com/attachgate/attachgate/smtptest"
)

// TestLinksCLI: `attachgate links list|show|revoke` next to a running
// daemon: filters by sender and state, shows one link, revokes it (the
// recipient's link answers 410 at once) with the same audit events as the
// admin API, actor cli:<user>; bad filters exit 2 naming the flag.
func TestLinksCLI(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, "")
	if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("a.pdf", []byte("aaa"))); err != nil {
		t.Fatal(err)
	}
	if err := d.send("carol@example.com", []string{"dave@example.org"}, mailWithAttachment("c\x1b[31m.pdf", []byte("ccc"))); err != nil {
		t.Fatal(err)
	}
	carolLinks := relayedLinks(t, d, hop.Messages()[1].Data)

	list := func(args ...string) []map[string]any {
		t.Helper()
		out, errOut, code := runCLI(t, append([]string{"links", "list", "-config", d.config, "-json"}, args...)...)
		if code != 0 {
			t.Fatalf("links list %v: exit %d: %s", args, code, errOut)
		}
		var infos []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			infos = append(infos, m)
		}
		return infos
	}
	if all := list(); len(all) != 2 {
		t.Fatalf("links list: %d links, want 2", len(all))
	}
	carol := list("-sender", "CAROL@example.com")
	if len(carol) != 1 || carol[0]["sender"] != "carol@example.com" || carol[0]["status"] != "active" {
		t.Fatalf("links list -sender carol: %v", carol)
	}
	id := carol[0]["link_id"].(string)
	if got := list("-recipient", "bob@example.net"); len(got) != 1 || got[0]["sender"] != "alice@example.com" {
		t.Fatalf("links list -recipient bob: %v", got)
	}

	// The table keeps control characters of file names off the terminal.
	table, _, code := runCLI(t, "links", "list", "-config", d.config)
	if code != 0 || !strings.Contains(table, "LINK_ID") || strings.Contains(table, "\x1b") || !strings.Contains(table, id) {
		t.Fatalf("links list table (exit %d):\n%q", code, table)
	}

	out, errOut, code := runCLI(t, "links", "show", id, "-config", d.config)
	if code != 0 || !strings.Contains(out, `"link_id": "`+id+`"`) {
		t.Fatalf("links show: exit %d: %s %s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, "links", "revoke", "-config", d.config, id)
	if code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("links revoke: exit %d: %s %s", code, out, errOut)
	}
	resp, err := http.Get(carolLinks[0])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("revoked link answers %s, want 410", resp.Status)
	}
	if got := list("-state", "revoked"); len(got) != 1 || got[0]["link_id"] != id {
		t.Fatalf("links list -state revoked: %v", got)
	}
	if got := list("-state", "active"); len(got) != 1 || got[0]["sender"] != "alice@example.com" {
		t.Fatalf("links list -state active: %v", got)
	}
	if _, _, code := runCLI(t, "links", "revoke", "-config", d.config, id); code != 0 {
		t.Fatalf("revoking again: exit %d", code)
	}

	u, _ := user.Current()
	actor := "cli:" + u.Username
	var revokes, revoked int
	for _, ev := range exportEvents(t, d) {
		switch ev["type"] {
		case "admin.link.revoke":
			revokes++
			if ev["actor"] != actor || ev["link_id"] != id {
				t.Errorf("admin.link.revoke: %v", ev)
			}
		case "link.revoked":
			revoked++
			if ev["actor"] != actor || ev["link_id"] != id || ev["reason"] != "admin" {
				t.Errorf("link.revoked: %v", ev)
			}
		case "admin.link.list", "admin.link.view":
			if ev["actor"] != actor {
				t.Errorf("%s by %v, want %s", ev["type"], ev["actor"], actor)
			}
		}
	}
	if revokes != 2 || revoked != 1 {
		t.Errorf("admin.link.revoke %d (want 2: both calls), link.revoked %d (want 1: the first)", revokes, revoked)
	}

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"-state", "gone"}, "-state"},
		{[]string{"-from", "2026-1-1"}, "-from"},
		{[]string{"-limit", "0"}, "-limit"},
		{[]string{"-sender", ""}, "-sender"},
	} {
		_, errOut, code := runCLI(t, append([]string{"links", "list", "-config", d.config}, bad.args...)...)
		if code != 2 || !strings.Contains(errOut, bad.want) {
			t.Errorf("links list %v: exit %d, stderr %q; want 2 naming %s", bad.args, code, errOut, bad.want)
		}
	}
	if _, errOut, code := runCLI(t, "links", "show", "-config", d.config, "no-such-link"); code != 1 || !strings.Contains(errOut, "unknown link") {
		t.Errorf("links show unknown: exit %d %q", code, errOut)
	}
	if _, _, code := runCLI(t, "links", "show", "-config", d.config, "../etc"); code != 2 {
		t.Errorf("links show ../etc: exit %d, want 2", code)
	}
}
