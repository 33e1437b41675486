package smtpd

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/quarantine"
	"github.com/attachgate/attachgate/scan"
	"github.com/attachgate/attachgate/scan/clamdtest"
	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/vault"
)

// scanGateway is a whole gateway with a real clamd (started by the test,
// EICAR signature only), a real quarantine and a capturing next hop.
type scanGateway struct {
	*gateway
	hop   *smtptest.Server
	held  *quarantine.Manager
	clamd *clamdtest.Server
}

type scanSetup struct {
	rules      string // policies YAML; "" none
	pass       bool   // scan.on_error: pass
	onInfected policies.Action
	clamd      clamdtest.Options
	timeout    time.Duration // scan.timeout; 0: 60 s
}

func startScanGateway(t *testing.T, s scanSetup) *scanGateway {
	t.Helper()
	clamd := clamdtest.Start(t, s.clamd)
	if s.timeout == 0 {
		s.timeout = 60 * time.Second
	}
	client, err := scan.New(clamd.Addr, s.timeout)
	if err != nil {
		t.Fatal(err)
	}
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	var held *quarantine.Manager
	g := startGateway(t, hop.Addr, func(o *Options, p *pipeline.Pipeline) {
		if s.rules != "" {
			p.Policies = testEngine(t, s.rules)
		}
		p.Scan = &pipeline.Scan{Client: client, Pass: s.pass, OnInfected: s.onInfected}
		dir := filepath.Dir(p.SpoolDir)
		ring, err := vault.OpenKeyRing(filepath.Join(dir, "keys"))
		if err != nil {
			t.Fatal(err)
		}
		held, err = quarantine.Open(context.Background(), quarantine.Options{
			DB: p.Store.(*store.SQLite).DB(), Dir: filepath.Join(dir, "quarantine"), Ring: ring,
			Audit: p.Audit, Hop: o.Hop, Deliverer: quarantine.Deliver(p), HoldFor: time.Hour, Logger: p.Logger})
		if err != nil {
			t.Fatal(err)
		}
		p.Quarantine = held.Holder()
	})
	return &scanGateway{gateway: g, hop: hop, held: held, clamd: clamd}
}

// assertNothingStored: no blob in the vault, no message in the store, no
// spool file left.
func (g *scanGateway) assertNothingStored(t *testing.T) {
	t.Helper()
	if n := fileCount(t, filepath.Join(g.dir, "blobs")); n != 0 {
		t.Errorf("the vault holds %d files", n)
	}
	for _, table := range []string{"messages", "files", "links"} {
		var n int
		if err := g.store.DB().QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("the store's %s table holds %d rows", table, n)
		}
	}
	g.assertNoLeftovers()
}

func (g *scanGateway) heldItems(t *testing.T) []quarantine.Item {
	t.Helper()
	items, err := g.held.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return items
}

func eicarMail() []byte {
	return mailWith("invoice", "see attached",
		attachment{"report.pdf", "application/pdf", random(30000)},
		attachment{"invoice.com", "application/octet-stream", []byte(clamdtest.EICAR)})
}

// replyOf is the SMTP error of a refused DATA, failing the test for any
// other outcome.
func replyOf(t *testing.T, err error) *smtp.SMTPError {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("want an SMTP refusal, got %v", err)
	}
	return se
}

func TestScanEICARIsQuarantined(t *testing.T) {
	// Without rules the message is walked in one pass from the wire
	// (the linked attachments' bodies never reach the spool); with a
	// quarantine rule it is spooled whole first. Both end in the
	// quarantine with every byte.
	for _, tc := range []struct{ name, rules string }{
		{"one pass", ""},
		{"spooled", "- name: review-macros\n  match: {filename_glob: \"*.docm\"}\n  action: quarantine\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startScanGateway(t, scanSetup{rules: tc.rules})
			msg := eicarMail()
			if err := g.send("alice@example.com", []string{"bob@example.net"}, msg); err != nil {
				t.Fatalf("send: %v (want 250: held)", err)
			}
			if got := g.hop.Messages(); len(got) != 0 {
				t.Fatalf("the next hop got %d messages", len(got))
			}
			items := g.heldItems(t)
			if len(items) != 1 || items[0].Action != policies.Quarantine || items[0].Rule != pipeline.MalwareRule+clamdtest.Signature {
				t.Fatalf("quarantine: %+v", items)
			}
			if sum := sha256.Sum256(msg); items[0].SHA256 != hex.EncodeToString(sum[:]) || items[0].Size != int64(len(msg)) {
				t.Fatalf("the quarantine holds %d bytes (sha256 %s), not the %d sent", items[0].Size, items[0].SHA256, len(msg))
			}
			g.assertNothingStored(t)
			inf := g.events(audit.TypeScanInfected)
			if len(inf) != 1 || inf[0]["file_name"] != "invoice.com" || inf[0]["reason"] != clamdtest.Signature ||
				inf[0]["detail"] != "on_infected=quarantine rule=default" || inf[0]["message_id"] != items[0].ID {
				t.Fatalf("scan.infected: %v", inf)
			}
			if clean := g.events(audit.TypeScanClean); len(clean) != 1 || clean[0]["file_name"] != "report.pdf" {
				t.Fatalf("scan.clean: %v", clean)
			}
			if links := g.events(audit.TypeLinkCreated); len(links) != 0 {
				t.Fatalf("links were created: %v", links)
			}
			// Releasing it does not let the malware out: it is scanned
			// again, and the release fails.
			res, err := g.held.Release(context.Background(), items[0].ID, "admin:test")
			if err == nil || !strings.Contains(err.Error(), "554 5.7.1") && !strings.Contains(err.Error(), "malware") {
				t.Fatalf("release of infected mail: %+v, %v", res, err)
			}
			if got := g.hop.Messages(); len(got) != 0 {
				t.Fatalf("the release delivered the malware")
			}
			if len(g.heldItems(t)) != 1 {
				t.Fatal("the infected message left the quarantine")
			}
			inf = g.events(audit.TypeScanInfected)
			if len(inf) != 2 || inf[1]["actor"] != "admin:test" || inf[1]["message_id"] != items[0].ID {
				t.Fatalf("the release's scan.infected: %v", inf)
			}
		})
	}
}

func TestScanKeptAttachmentIsScanned(t *testing.T) {
	g := startScanGateway(t, scanSetup{rules: "- name: keep-notes\n  match: {extensions: [\".txt\"]}\n  action: keep\n"})
	msg := mailWith("notes", "hi", attachment{"notes.txt", "text/plain", []byte(clamdtest.EICAR)})
	if err := g.send("alice@example.com", []string{"bob@example.net"}, msg); err != nil {
		t.Fatalf("send: %v", err)
	}
	if len(g.hop.Messages()) != 0 || len(g.heldItems(t)) != 1 {
		t.Fatalf("kept EICAR: hop got %d, quarantine %d", len(g.hop.Messages()), len(g.heldItems(t)))
	}
	if inf := g.events(audit.TypeScanInfected); len(inf) != 1 || inf[0]["detail"] != "on_infected=quarantine rule=keep-notes" {
		t.Fatalf("scan.infected: %v", inf)
	}
}

func TestScanEICARIsRejected(t *testing.T) {
	for _, tc := range []struct {
		name       string
		setup      scanSetup
		wantDetail string
	}{
		{"rule on_infected", scanSetup{rules: "- name: outside\n  match: {recipient_domains_not: [\"example.com\"]}\n  action: link\n  on_infected: reject\n"},
			"on_infected=reject rule=outside"},
		{"scan.on_infected", scanSetup{onInfected: policies.Reject}, "on_infected=reject rule=default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startScanGateway(t, tc.setup)
			err := g.send("alice@example.com", []string{"bob@example.net"}, eicarMail())
			se := replyOf(t, err)
			if se.Code != 554 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) || !strings.Contains(se.Message, clamdtest.Signature) {
				t.Fatalf("reply %d %v %q, want 554 5.7.1 naming the signature", se.Code, se.EnhancedCode, se.Message)
			}
			if len(g.hop.Messages()) != 0 || len(g.heldItems(t)) != 0 {
				t.Fatal("refused mail was delivered or held")
			}
			g.assertNothingStored(t)
			if inf := g.events(audit.TypeScanInfected); len(inf) != 1 || inf[0]["detail"] != tc.wantDetail {
				t.Fatalf("scan.infected: %v", inf)
			}
			rej := g.events(audit.TypeMailRejected)
			if len(rej) != 1 || !strings.HasPrefix(rej[0]["reply"].(string), "554 5.7.1") {
				t.Fatalf("mail.rejected: %v", rej)
			}
		})
	}
}

func TestScanCleanFileIsLinked(t *testing.T) {
	g := startScanGateway(t, scanSetup{})
	content := random(200000)
	if err := g.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("report", "attached", "report.pdf", content)); err != nil {
		t.Fatal(err)
	}
	got := g.hop.Messages()
	if len(got) != 1 {
		t.Fatalf("the next hop got %d messages", len(got))
	}
	resp, data := download(t, firstLink(t, got[0].Data))
	if resp.StatusCode != 200 || !bytes.Equal(data, content) {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(data))
	}
	clean := g.events(audit.TypeScanClean)
	stored := g.events(audit.TypeFileStored)
	if len(clean) != 1 || len(stored) != 1 || clean[0]["sha256"] != stored[0]["sha256"] || clean[0]["size"] != stored[0]["size"] ||
		!strings.HasPrefix(clean[0]["detail"].(string), "clamd tcp:127.0.0.1:") {
		t.Fatalf("scan.clean %v, file.stored %v", clean, stored)
	}
	// The verdict is on record before the link.
	if clean[0]["seq"].(float64) > stored[0]["seq"].(float64) {
		t.Fatalf("scan.clean recorded after file.stored")
	}
}

func TestScanClamdDown(t *testing.T) {
	t.Run("tempfail", func(t *testing.T) {
		g := startScanGateway(t, scanSetup{})
		g.clamd.Stop()
		err := g.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("report", "attached", "report.pdf", random(50000)))
		se := replyOf(t, err)
		if se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) {
			t.Fatalf("reply %d %v %q, want 451 4.7.1", se.Code, se.EnhancedCode, se.Message)
		}
		if len(g.hop.Messages()) != 0 || len(g.heldItems(t)) != 0 {
			t.Fatal("unscanned mail went on")
		}
		g.assertNothingStored(t)
		se2 := g.events(audit.TypeScanError)
		if len(se2) != 1 || se2[0]["detail"] != "on_error=tempfail" || !strings.Contains(se2[0]["reason"].(string), "dial") {
			t.Fatalf("scan.error: %v", se2)
		}
		if d := g.events(audit.TypeMailDeferred); len(d) != 1 || !strings.HasPrefix(d[0]["reply"].(string), "451 4.7.1") {
			t.Fatalf("mail.deferred: %v", d)
		}
	})
	t.Run("frozen clamd times out", func(t *testing.T) {
		g := startScanGateway(t, scanSetup{timeout: time.Second})
		g.clamd.Freeze()
		// scan.timeout is 1 s: the scan gives up on its own.
		err := g.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("report", "attached", "report.pdf", random(5000)))
		if se := replyOf(t, err); se.Code != 451 {
			t.Fatalf("reply %d %q", se.Code, se.Message)
		}
		g.assertNothingStored(t)
	})
	t.Run("on_error pass", func(t *testing.T) {
		g := startScanGateway(t, scanSetup{pass: true})
		g.clamd.Stop()
		content := random(50000)
		if err := g.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("report", "attached", "report.pdf", content)); err != nil {
			t.Fatalf("send: %v", err)
		}
		got := g.hop.Messages()
		if len(got) != 1 {
			t.Fatalf("the next hop got %d messages", len(got))
		}
		if _, data := download(t, firstLink(t, got[0].Data)); !bytes.Equal(data, content) {
			t.Fatal("download differs")
		}
		if e := g.events(audit.TypeScanError); len(e) != 1 || e[0]["detail"] != "on_error=pass" || e[0]["file_name"] != "report.pdf" {
			t.Fatalf("scan.error: %v", e)
		}
	})
	t.Run("StreamMaxLength is an error", func(t *testing.T) {
		g := startScanGateway(t, scanSetup{clamd: clamdtest.Options{StreamMaxLength: "1M"}})
		err := g.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("big", "attached", "big.bin", random(3<<20)))
		if se := replyOf(t, err); se.Code != 451 {
			t.Fatalf("reply %d %q", se.Code, se.Message)
		}
		g.assertNothingStored(t)
		if e := g.events(audit.TypeScanError); len(e) != 1 || !strings.Contains(e[0]["reason"].(string), "size limit") {
			t.Fatalf("scan.error: %v", e)
		}
	})
}

// encryptedZip is a password-protected ("PPAP") zip: its entry has the
// general-purpose flag bit 0 (encrypted) set, as ZipCrypto writes it.
func encryptedZip(t *testing.T) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	data := random(4000) // stands for the ciphertext
	w, err := zw.CreateRaw(&zip.FileHeader{Name: "budget.xlsx", Method: zip.Store, Flags: 0x1,
		CRC32: crc32.ChecksumIEEE(data), CompressedSize64: uint64(len(data)), UncompressedSize64: uint64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func plainZip(t *testing.T) []byte {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, _ := zw.Create("notes.txt")
	w.Write([]byte("meeting notes\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestEncryptedArchiveRule(t *testing.T) {
	rules := `
- name: ppap
  match: {encrypted_archive: true, recipient_domains_not: ["example.com"]}
  action: quarantine
`
	g := startScanGateway(t, scanSetup{rules: rules})
	// A plain zip is scanned and linked.
	if err := g.send("alice@example.com", []string{"bob@example.net"},
		mailWith("notes", "hi", attachment{"notes.zip", "application/zip", plainZip(t)})); err != nil {
		t.Fatal(err)
	}
	if len(g.hop.Messages()) != 1 || len(g.heldItems(t)) != 0 {
		t.Fatalf("plain zip: hop %d, held %d", len(g.hop.Messages()), len(g.heldItems(t)))
	}
	// The password-protected one matches encrypted_archive.
	if err := g.send("alice@example.com", []string{"bob@example.net"},
		mailWith("budget", "password follows", attachment{"budget.zip", "application/zip", encryptedZip(t)})); err != nil {
		t.Fatal(err)
	}
	items := g.heldItems(t)
	if len(g.hop.Messages()) != 1 || len(items) != 1 || items[0].Rule != "ppap" || items[0].Action != policies.Quarantine {
		t.Fatalf("encrypted zip: hop %d, held %+v", len(g.hop.Messages()), items)
	}
	if c := g.events(audit.TypeScanClean); len(c) != 2 {
		t.Fatalf("both zips are scanned: %v", c)
	}
}

// TestScanLargeAttachment: 20 MB with EICAR at its very end reaches clamd
// whole (through the fixed chunk buffer; clamd finds the signature only if
// every chunk arrived), and a clean 20 MB file is linked.
func TestScanLargeAttachment(t *testing.T) {
	// clamd scans the whole file after the last chunk: a generous
	// timeout, so a loaded machine does not turn the verdict into 451.
	g := startScanGateway(t, scanSetup{onInfected: policies.Reject, timeout: 3 * time.Minute})
	big := make([]byte, 20<<20)
	rand.Read(big)
	bad := append(bytes.Clone(big), clamdtest.EICAR...)
	err := g.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("big", "attached", "big.bin", bad))
	if se := replyOf(t, err); se.Code != 554 {
		t.Fatalf("reply %d %q", se.Code, se.Message)
	}
	g.assertNothingStored(t)
	if err := g.send("alice@example.com", []string{"bob@example.net"}, mailWithAttachment("big", "attached", "big.bin", big)); err != nil {
		t.Fatal(err)
	}
	got := g.hop.Messages()
	if len(got) != 1 {
		t.Fatalf("the next hop got %d messages", len(got))
	}
	if _, data := download(t, firstLink(t, got[0].Data)); !bytes.Equal(data, big) {
		t.Fatal("download differs")
	}
	if c := g.events(audit.TypeScanClean); len(c) != 1 || c[0]["size"].(float64) != float64(len(big)) {
		t.Fatalf("scan.clean: %v", c)
	}
}

// TestScanConcurrentClients: 30 clients at once, every other one with
// EICAR; each gets its own verdict (no stream mixed up with another).
func TestScanConcurrentClients(t *testing.T) {
	g := startScanGateway(t, scanSetup{onInfected: policies.Reject})
	const n = 30
	errs := make(chan error, n)
	for i := range n {
		go func() {
			content := random(100000 + i*1000)
			if i%2 == 1 {
				content = append(content, clamdtest.EICAR...)
			}
			errs <- g.send("alice@example.com", []string{"bob@example.net"},
				mailWithAttachment("c", "attached", "f.bin", content))
		}()
	}
	accepted, refused := 0, 0
	for range n {
		err := <-errs
		switch {
		case err == nil:
			accepted++
		case replyOf(t, err).Code == 554:
			refused++
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	if accepted != n/2 || refused != n/2 || len(g.hop.Messages()) != n/2 {
		t.Fatalf("accepted %d, refused %d, relayed %d", accepted, refused, len(g.hop.Messages()))
	}
	if c, i := g.events(audit.TypeScanClean), g.events(audit.TypeScanInfected); len(c) != n/2 || len(i) != n/2 {
		t.Fatalf("scan.clean %d, scan.infected %d", len(c), len(i))
	}
}

// TestScanHeldMail: a message a hold rule delays is scanned on arrival
// too: with malware it is quarantined (never released on the timer);
// clean, it is held as the rule says.
func TestScanHeldMail(t *testing.T) {
	rules := "- name: hold-all-outside\n  match: {recipient_domains_not: [\"example.com\"]}\n  action: hold\n"
	g := startScanGateway(t, scanSetup{rules: rules})
	if err := g.send("alice@example.com", []string{"bob@example.net"}, eicarMail()); err != nil {
		t.Fatal(err)
	}
	if err := g.send("alice@example.com", []string{"bob@example.net"},
		mailWithAttachment("report", "attached", "report.pdf", random(20000))); err != nil {
		t.Fatal(err)
	}
	items := g.heldItems(t)
	if len(items) != 2 {
		t.Fatalf("held: %+v", items)
	}
	if items[0].Action != policies.Quarantine || items[0].Rule != pipeline.MalwareRule+clamdtest.Signature || !items[0].ReleaseAt.IsZero() {
		t.Errorf("infected held mail: %+v", items[0])
	}
	if items[1].Action != policies.Hold || items[1].Rule != "hold-all-outside" {
		t.Errorf("clean held mail: %+v", items[1])
	}
	if inf := g.events(audit.TypeScanInfected); len(inf) != 1 || inf[0]["detail"] != "on_infected=quarantine rule=hold-all-outside" {
		t.Fatalf("scan.infected: %v", inf)
	}
	if c := g.events(audit.TypeScanClean); len(c) != 2 {
		t.Fatalf("scan.clean: %v", c)
	}
}
