package main

import (
	"crypto/rand"
	"database/sql"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	_ "modernc.org/sqlite"

	"github.com/attachgate/attachgate/smtptest"
)

// Issue 9 item 11 on the real file: deleting the newest events, or all of
// them, from attachgate.db used to leave `audit verify` saying OK. The
// head recorded outside the database names the lost range.
func TestAuditVerifyDetectsTruncatedDatabase(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	d := startDaemon(t, hop.Addr, "")
	content := make([]byte, 5000)
	rand.Read(content)
	for range 2 {
		if err := d.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("a.pdf", content)); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, "audit", "verify", "-config", d.config)
	if code != 0 || !strings.Contains(out, "MACs verified") {
		t.Errorf("intact log: exit %d\n%s%s", code, out, errOut)
	}

	db, err := sql.Open("sqlite", filepath.Join(d.dir, "data", "attachgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var last int64
	if err := db.QueryRow(`SELECT MAX(seq) FROM audit_events`).Scan(&last); err != nil || last < 4 {
		t.Fatalf("max seq %d: %v", last, err)
	}
	if _, err := db.Exec(`DELETE FROM audit_events WHERE seq > ?`, last-2); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLI(t, "audit", "verify", "-config", d.config)
	want := "truncated: events seq " + itoa(last-1) + ".." + itoa(last) + " lost"
	if code != 1 || !strings.Contains(out+errOut, want) {
		t.Errorf("newest events deleted: exit %d, want 1 and %q\n%s%s", code, want, out, errOut)
	}

	if _, err := db.Exec(`DELETE FROM audit_events`); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLI(t, "audit", "verify", "-config", d.config)
	want = "truncated: events seq 1.." + itoa(last) + " lost"
	if code != 1 || !strings.Contains(out+errOut, want) {
		t.Errorf("all events deleted: exit %d, want 1 and %q\n%s%s", code, want, out, errOut)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
