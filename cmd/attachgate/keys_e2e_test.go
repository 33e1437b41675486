package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/store"
)

// TestKeyRotation rotates the key ring while the gateway runs: after
// SIGHUP new files are encrypted to the new key, files stored before still
// download, and the rotation is on the audit record.
func TestKeyRotation(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, "")
	before := []byte("stored under the first key")
	if err := d.send("a@example.com", []string{"b@example.net"}, mailWithAttachment("before.pdf", before)); err != nil {
		t.Fatal(err)
	}
	list, _, code := runCLI(t, "keys", "list", "-config", d.config)
	if code != 0 || strings.Count(list, "\n") != 1 || !strings.HasPrefix(list, "* k") {
		t.Fatalf("keys list before rotation: exit %d %q", code, list)
	}
	firstKey := strings.TrimSpace(strings.TrimPrefix(list, "*"))

	out, errOut, code := runCLI(t, "keys", "rotate", "-config", d.config)
	if code != 0 {
		t.Fatalf("keys rotate: exit %d %s", code, errOut)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "key ring reload", func() bool { return strings.Contains(d.log.String(), "key ring reloaded") })

	after := []byte("stored under the second key")
	if err := d.send("a@example.com", []string{"b@example.net"}, mailWithAttachment("after.pdf", after)); err != nil {
		t.Fatal(err)
	}
	list, _, _ = runCLI(t, "keys", "list", "-config", d.config)
	var current string
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		if id, ok := strings.CutPrefix(line, "* "); ok {
			current = id
		}
	}
	if strings.Count(list, "\n") != 2 || !strings.Contains(list, "  "+firstKey) || current == "" || current == firstKey {
		t.Fatalf("keys list after rotation %q: want the old key kept, a new one current (rotate said %q)", list, out)
	}
	// Each file records the key it was encrypted to.
	st, err := store.OpenSQLite(filepath.Join(d.dir, "data", "attachgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys := map[string]string{}
	rows, err := st.DB().Query("SELECT name, key_id FROM files")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, key string
		rows.Scan(&name, &key)
		keys[name] = key
	}
	rows.Close()
	if keys["before.pdf"] != firstKey || keys["after.pdf"] != current {
		t.Fatalf("files encrypted to %v, want before.pdf→%s and after.pdf→%s", keys, firstKey, current)
	}
	for i, want := range [][]byte{before, after} {
		link := relayedLinks(t, d, hop.Messages()[i].Data)[0]
		if resp, data := download(t, link); resp.StatusCode != 200 || !bytes.Equal(data, want) {
			t.Fatalf("download %d after rotation: %s %q", i, resp.Status, data)
		}
	}
	audited := false
	for _, ev := range exportEvents(t, d) {
		if ev["type"] == "admin.keys.rotate" {
			audited = true
			if actor, _ := ev["actor"].(string); !strings.HasPrefix(actor, "cli:") || ev["detail"] != "from "+firstKey {
				t.Errorf("rotation event: %v", ev)
			}
		}
	}
	if !audited {
		t.Fatal("no admin.keys.rotate event")
	}
}
