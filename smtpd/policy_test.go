package smtpd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"go.yaml.in/yaml/v3"

	"github.com/attachgate/attachgate/admin"
	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/mailpart"
	"github.com/attachgate/attachgate/pipeline"
	"github.com/attachgate/attachgate/policies"
	"github.com/attachgate/attachgate/quarantine"
	"github.com/attachgate/attachgate/smtptest"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/testsupport"
	"github.com/attachgate/attachgate/vault"
)

// testRules are the README's example rules plus a quarantine rule and a
// size-only reject.
const testRules = `
- name: keep-small-images
  match: {content_types: ["image/*"], max_size: 1048576}
  action: keep
- name: keep-notes
  match: {extensions: [".txt"]}
  action: keep
- name: block-executables
  match: {extensions: [".exe", ".scr", ".js"]}
  action: reject
- name: review-macros
  match: {filename_glob: "*.docm"}
  action: quarantine
- name: hold-external-finance
  match: {sender_domains: ["finance.example.com"], recipient_domains_not: ["example.com"]}
  action: hold
- name: refuse-huge
  match: {min_size: 3000000}
  action: reject
`

const (
	opsSecret     = "ops-secret-for-policy-tests-0123456789abcdef"
	auditorSecret = "auditor-secret-for-policy-tests-0123456789ab"
)

// policyGateway is a gateway with policies, a quarantine and the admin API
// in front of it, all real.
type policyGateway struct {
	*gateway
	hop      *smtptest.Server
	held     *quarantine.Manager
	adminURL string
}

func testEngine(t testing.TB, doc string) *policies.Engine {
	t.Helper()
	var rules []policies.Rule
	if err := yamlDecodeStrict(doc, &rules); err != nil {
		t.Fatal(err)
	}
	e, err := policies.New(rules)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func startPolicyGateway(t *testing.T, rules string, holdFor time.Duration) *policyGateway {
	t.Helper()
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	var held *quarantine.Manager
	g := startGateway(t, hop.Addr, func(o *Options, p *pipeline.Pipeline) {
		p.Policies = testEngine(t, rules)
		dir := filepath.Dir(p.SpoolDir)
		ring, err := vault.OpenKeyRing(filepath.Join(dir, "keys"))
		if err != nil {
			t.Fatal(err)
		}
		held, err = quarantine.Open(context.Background(), quarantine.Options{
			DB: p.Store.(*store.SQLite).DB(), Dir: filepath.Join(dir, "quarantine"), Ring: ring,
			Audit: p.Audit, Hop: o.Hop, Deliverer: quarantine.Deliver(p), HoldFor: holdFor, Logger: p.Logger})
		if err != nil {
			t.Fatal(err)
		}
		p.Quarantine = held.Holder()
	})
	hash := func(s string) []byte { sum := sha256.Sum256([]byte(s)); return sum[:] }
	local := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	api, err := admin.New(admin.Options{
		Tokens: []admin.Token{
			{Name: "ops", SHA256: hash(opsSecret), Role: admin.RoleAdmin, Networks: local},
			{Name: "auditor", SHA256: hash(auditorSecret), Role: admin.RoleAuditor, Networks: local},
		},
		Store: g.store, Audit: g.audit, Export: g.audit, Quarantine: held, Location: time.UTC,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(hs.Close)
	return &policyGateway{gateway: g, hop: hop, held: held, adminURL: hs.URL}
}

// attachment is one file of a test mail.
type attachment struct {
	name, contentType string
	content           []byte
}

// mailWith builds a multipart/mixed mail with a text body and base64
// attachments.
func mailWith(subject, body string, files ...attachment) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <alice@example.com>\r\nTo: <bob@example.net>\r\nSubject: %s\r\n", subject)
	fmt.Fprintf(&b, "Message-ID: <policy-%d@example.com>\r\nMIME-Version: 1.0\r\n", time.Now().UnixNano())
	b.WriteString("Content-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n")
	fmt.Fprintf(&b, "--=_b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", body)
	for _, f := range files {
		fmt.Fprintf(&b, "--=_b\r\nContent-Type: %s\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=%q\r\n\r\n",
			f.contentType, f.name)
		enc := base64.StdEncoding.EncodeToString(f.content)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
	}
	b.WriteString("--=_b--\r\n")
	return b.Bytes()
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// partsOf returns the decoded bodies of a message's attachments by name.
func partsOf(t *testing.T, msg []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	_, err := mailpart.Walk(bytes.NewReader(msg), mailpart.Limits{}, func(p *mailpart.Part, body io.Reader) error {
		if p.Disposition == "attachment" || p.Attachment {
			data, err := io.ReadAll(body)
			if err != nil {
				return err
			}
			out[p.Filename] = data
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk relayed message: %v", err)
	}
	return out
}

// events returns the audit events of the given types, oldest first.
func (g *gateway) events(types ...audit.EventType) []map[string]any {
	g.t.Helper()
	var names []string
	for _, t := range types {
		names = append(names, string(t))
	}
	var buf bytes.Buffer
	if err := g.audit.Export(context.Background(), audit.Query{Types: names}, &buf, "jsonl", false); err != nil {
		g.t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal(line, &e); err != nil {
			g.t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// adminCall sends one admin API request and decodes the JSON answer.
func (g *policyGateway) adminCall(t *testing.T, method, path, secret string, into any) int {
	t.Helper()
	req, _ := http.NewRequest(method, g.adminURL+path, nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if into != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, body)
		}
	}
	if resp.StatusCode != http.StatusOK {
		t.Logf("%s %s: %d %s", method, path, resp.StatusCode, body)
	}
	return resp.StatusCode
}

type heldEntry struct {
	ID        string   `json:"id"`
	Action    string   `json:"action"`
	Rule      string   `json:"rule"`
	Sender    string   `json:"sender"`
	Recipient []string `json:"recipients"`
	ReleaseAt *string  `json:"release_at"`
	Attempts  int      `json:"attempts"`
	LastError string   `json:"last_error"`
}

func (g *policyGateway) list(t *testing.T) []heldEntry {
	t.Helper()
	var items []heldEntry
	if code := g.adminCall(t, "GET", "/admin/quarantine", auditorSecret, &items); code != 200 {
		t.Fatalf("list: %d", code)
	}
	return items
}

// blobCount counts published blobs (not temp files) below dir.
func blobCount(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.HasSuffix(p, ".age") && filepath.Base(filepath.Dir(p)) != "tmp" {
			n++
		}
		return nil
	})
	return n
}

// sendOn runs one transaction on an open client connection.
func sendOn(c *smtp.Client, from string, to []string, msg []byte) error {
	_, err := sendReply(c, from, to, msg)
	return err
}

// sendReply runs one transaction and returns the final reply's text.
func sendReply(c *smtp.Client, from string, to []string, msg []byte) (string, error) {
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	if _, err := w.Write(msg); err != nil {
		return "", err
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	return resp.StatusText, nil
}

// sendHeld sends one mail on a new connection and wants it held.
func (g *policyGateway) sendHeld(t *testing.T, from string, to []string, msg []byte) string {
	t.Helper()
	reply, err := sendReply(g.dial(), from, to, msg)
	if err != nil || !strings.HasPrefix(reply, "2.0.0 Held for review (id ") {
		t.Fatalf("want the mail held, got %q, %v", reply, err)
	}
	return reply
}

func TestPolicyKeepsSomeAttachmentsAndLinksOthers(t *testing.T) {
	g := startPolicyGateway(t, testRules, time.Hour)
	img, notes, pdf := random(20000), []byte("meeting notes\r\nline two\r\n"), random(50000)
	err := g.send("alice@example.com", []string{"bob@example.net"}, mailWith("mixed", "see attached",
		attachment{"logo.png", "image/png", img},
		attachment{"notes.txt", "text/plain", notes},
		attachment{"report.pdf", "application/pdf", pdf}))
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	msgs := g.hop.Messages()
	if len(msgs) != 1 {
		t.Fatalf("next hop got %d messages", len(msgs))
	}
	parts := partsOf(t, msgs[0].Data)
	if !bytes.Equal(parts["logo.png"], img) {
		t.Errorf("kept image (size rule) not byte for byte: %d bytes", len(parts["logo.png"]))
	}
	if !bytes.Equal(parts["notes.txt"], notes) {
		t.Errorf("kept notes (extension rule) changed: %q", parts["notes.txt"])
	}
	if _, ok := parts["report.pdf"]; ok {
		t.Error("report.pdf was not taken out")
	}
	links := linkRE.FindAllString(string(msgs[0].Data), -1)
	if len(links) != 1 {
		t.Fatalf("want one link, got %v", links)
	}
	resp, data := download(t, links[0])
	if resp.StatusCode != 200 || !bytes.Equal(data, pdf) {
		t.Fatalf("download: %s, %d bytes", resp.Status, len(data))
	}
	// The image went through the vault to learn its size and was removed.
	if n := blobCount(t, filepath.Join(g.dir, "blobs")); n != 1 {
		t.Errorf("vault holds %d blobs, want only the linked one", n)
	}
	if n := len(g.events(audit.TypeFileStored)); n != 1 {
		t.Errorf("%d file.stored events, want 1", n)
	}
	g.assertNoLeftovers()
}

func TestPolicyRejectRefusesTheWholeMessage(t *testing.T) {
	g := startPolicyGateway(t, testRules, time.Hour)
	tests := []struct {
		name  string
		files []attachment
		rule  string
	}{
		{"executable", []attachment{{"report.pdf", "application/pdf", random(40000)}, {"setup.exe", "application/octet-stream", random(1000)}}, "block-executables"},
		{"size rule", []attachment{{"report.pdf", "application/pdf", random(20000)}, {"huge.bin", "application/octet-stream", random(3000001)}}, "refuse-huge"},
		{"reject beats quarantine", []attachment{{"macro.docm", "application/octet-stream", random(100)}, {"x.js", "text/javascript", []byte("alert(1)")}}, "block-executables"},
	}
	c := g.dial()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sendOn(c, "alice@example.com", []string{"bob@example.net"}, mailWith(tt.name, "body", tt.files...))
			se := wantCode(t, "reject", err, 550, smtp.EnhancedCode{5, 7, 1})
			if se.Message != "Message refused by policy "+tt.rule {
				t.Errorf("reply text %q", se.Message)
			}
		})
	}
	// The same connection still relays: the next hop's transaction was reset.
	if err := sendOn(c, "alice@example.com", []string{"carol@example.net"}, mailWith("fine", "body",
		attachment{"ok.pdf", "application/pdf", random(100)})); err != nil {
		t.Fatalf("mail after the refusals: %v", err)
	}
	msgs := g.hop.Messages()
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "carol@example.net" {
		t.Fatalf("next hop got %+v, want only the last mail", msgs)
	}
	if n := blobCount(t, filepath.Join(g.dir, "blobs")); n != 1 {
		t.Errorf("vault holds %d blobs, want only the last mail's", n)
	}
	if n := blobCount(t, filepath.Join(g.dir, "quarantine")); n != 0 {
		t.Errorf("quarantine holds %d blobs", n)
	}
	rejected := g.events(audit.TypeMailRejected)
	if len(rejected) != 3 || rejected[0]["reason"] != "block-executables" ||
		rejected[0]["reply"] != "550 5.7.1 Message refused by policy block-executables" {
		t.Errorf("mail.rejected events: %v", rejected)
	}
	g.assertNoLeftovers()
}

func TestQuarantineHoldsReleasesAndDeletes(t *testing.T) {
	g := startPolicyGateway(t, testRules, time.Hour)
	const marker = "TOP-SECRET-MACRO-CONTENT-4711"
	docm := append([]byte(marker), random(30000)...)
	img := random(5000)

	c := g.dial()
	heldReply, err := sendReply(c, "alice@example.com", []string{"bob@example.net", "dave@example.org"}, mailWith("Quarterly "+marker, "body "+marker,
		attachment{"logo.png", "image/png", img},
		attachment{"budget.docm", "application/vnd.ms-word.document.macroEnabled.12", docm}))
	if err != nil || !strings.HasPrefix(heldReply, "2.0.0 Held for review (id ") {
		t.Fatalf("quarantined mail: %q, %v", heldReply, err)
	}
	// The connection goes on; the next hop got nothing of the held mail.
	if err := sendOn(c, "alice@example.com", []string{"erin@example.net"}, mailWith("plain", "no files")); err != nil {
		t.Fatalf("mail after the held one: %v", err)
	}
	if msgs := g.hop.Messages(); len(msgs) != 1 || msgs[0].To[0] != "erin@example.net" {
		t.Fatalf("next hop got %+v", msgs)
	}

	items := g.list(t)
	if len(items) != 1 || items[0].Action != "quarantine" || items[0].Rule != "review-macros" || items[0].ReleaseAt != nil {
		t.Fatalf("quarantine list = %+v", items)
	}
	id := items[0].ID
	if heldReply != "2.0.0 Held for review (id "+id+")" {
		t.Errorf("reply %q does not name %s", heldReply, id)
	}
	// Held encrypted: no plaintext on disk.
	qdir := filepath.Join(g.dir, "quarantine")
	if n := blobCount(t, qdir); n != 1 {
		t.Fatalf("quarantine holds %d blobs", n)
	}
	filepath.WalkDir(g.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		data, _ := os.ReadFile(p)
		if bytes.Contains(data, []byte(marker)) || bytes.Contains(data, []byte(base64.StdEncoding.EncodeToString(docm[:30]))) {
			t.Errorf("%s holds plaintext of the held message", p)
		}
		return nil
	})
	if held := g.events(audit.TypeMailHeld); len(held) != 1 || held[0]["reason"] != "review-macros" ||
		held[0]["message_id"] != id || !strings.Contains(held[0]["detail"].(string), "action=quarantine") {
		t.Errorf("mail.held: %v", held)
	}

	// An auditor may list, not release.
	if code := g.adminCall(t, "POST", "/admin/quarantine/"+id+"/release", auditorSecret, nil); code != 403 {
		t.Errorf("auditor release: %d, want 403", code)
	}
	var rel struct {
		ID, ReleasedAt, Reply string
	}
	if code := g.adminCall(t, "POST", "/admin/quarantine/"+id+"/release", opsSecret, &rel); code != 200 {
		t.Fatalf("release: %d", code)
	}
	if rel.ID != id || !strings.HasPrefix(rel.Reply, "250 ") {
		t.Errorf("release answer %+v", rel)
	}
	msgs := g.hop.Messages()
	if len(msgs) != 2 {
		t.Fatalf("next hop has %d messages after the release", len(msgs))
	}
	out := msgs[1]
	if out.From != "alice@example.com" || strings.Join(out.To, ",") != "bob@example.net,dave@example.org" {
		t.Errorf("released envelope %s -> %v", out.From, out.To)
	}
	parts := partsOf(t, out.Data)
	if !bytes.Equal(parts["logo.png"], img) {
		t.Error("the small image is not kept in the released mail")
	}
	if _, ok := parts["budget.docm"]; ok {
		t.Error("the held attachment was relayed instead of linked")
	}
	resp, data := download(t, firstLink(t, out.Data))
	if resp.StatusCode != 200 || !bytes.Equal(data, docm) {
		t.Fatalf("download after release: %s, %d bytes", resp.Status, len(data))
	}
	mustContain(t, out.Data, "id "+id)
	if items := g.list(t); len(items) != 0 {
		t.Errorf("still listed after release: %+v", items)
	}
	if n := blobCount(t, qdir); n != 0 {
		t.Errorf("quarantine holds %d blobs after release", n)
	}
	released := g.events(audit.TypeMailReleased)
	if len(released) != 1 || released[0]["actor"] != "admin:ops" || released[0]["reason"] != "admin" || released[0]["message_id"] != id {
		t.Errorf("mail.released: %v", released)
	}
	if rel := g.events(admin.TypeQuarantineRelease); len(rel) != 1 || rel[0]["actor"] != "admin:ops" {
		t.Errorf("admin.quarantine.release: %v", rel)
	}

	// A second held mail is deleted.
	g.sendHeld(t, "alice@example.com", []string{"bob@example.net"}, mailWith("again", "b",
		attachment{"b.docm", "application/octet-stream", random(100)}))
	items = g.list(t)
	if len(items) != 1 {
		t.Fatalf("list: %+v", items)
	}
	if code := g.adminCall(t, "POST", "/admin/quarantine/"+items[0].ID+"/delete", opsSecret, nil); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if code := g.adminCall(t, "POST", "/admin/quarantine/"+items[0].ID+"/delete", opsSecret, nil); code != 404 {
		t.Errorf("delete again: %d, want 404", code)
	}
	if items := g.list(t); len(items) != 0 || blobCount(t, qdir) != 0 {
		t.Errorf("after delete: %+v, %d blobs", items, blobCount(t, qdir))
	}
	if n := len(g.hop.Messages()); n != 2 {
		t.Errorf("next hop has %d messages, the deleted one must not go out", n)
	}
	if del := g.events(audit.TypeMailDeleted); len(del) != 1 || del[0]["actor"] != "admin:ops" {
		t.Errorf("mail.deleted: %v", del)
	}
	g.assertNoLeftovers()
}

func TestQuarantineReleaseFailureKeepsTheMessage(t *testing.T) {
	g := startPolicyGateway(t, testRules, time.Hour)
	pdf := random(3000)
	g.sendHeld(t, "alice@example.com", []string{"bob@example.net"}, mailWith("m", "b",
		attachment{"a.docm", "application/octet-stream", random(100)}, attachment{"r.pdf", "application/pdf", pdf}))
	id := g.list(t)[0].ID
	g.hop.SetBehaviour(smtptest.Behaviour{RejectRcpt: map[string]*smtp.SMTPError{
		"bob@example.net": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}}})
	if code := g.adminCall(t, "POST", "/admin/quarantine/"+id+"/release", opsSecret, nil); code != http.StatusBadGateway {
		t.Fatalf("release to a refusing next hop: %d, want 502", code)
	}
	items := g.list(t)
	if len(items) != 1 || items[0].Attempts != 1 || !strings.Contains(items[0].LastError, "No such user") {
		t.Fatalf("after the failed release: %+v", items)
	}
	g.hop.SetBehaviour(smtptest.Behaviour{DataReply: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}})
	if code := g.adminCall(t, "POST", "/admin/quarantine/"+id+"/release", opsSecret, nil); code != http.StatusBadGateway {
		t.Fatalf("release refused at DATA: %d, want 502", code)
	}
	// The failed DATA rolled back the release's files and links.
	if n := blobCount(t, filepath.Join(g.dir, "blobs")); n != 0 {
		t.Errorf("vault holds %d blobs after a failed release", n)
	}
	if d := g.events(audit.TypeMailDeferred); len(d) != 2 || d[0]["reason"] != "release failed" {
		t.Errorf("mail.deferred: %v", d)
	}
	g.hop.SetBehaviour(smtptest.Behaviour{})
	if code := g.adminCall(t, "POST", "/admin/quarantine/"+id+"/release", opsSecret, nil); code != 200 {
		t.Fatalf("release: %d", code)
	}
	msgs := g.hop.Messages()
	if len(msgs) != 1 {
		t.Fatalf("next hop has %d messages", len(msgs))
	}
	links := linkRE.FindAllString(string(msgs[0].Data), -1)
	if len(links) != 2 {
		t.Fatalf("links %v, want both attachments linked on release", links)
	}
	if resp, data := download(t, links[1]); resp.StatusCode != 200 || !bytes.Equal(data, pdf) {
		t.Fatalf("download: %s, %d bytes", resp.Status, len(data))
	}
}

func TestHoldIsReleasedAutomatically(t *testing.T) {
	g := startPolicyGateway(t, testRules, 2*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.held.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	xlsx := random(4000)
	g.sendHeld(t, "carol@finance.example.com", []string{"bob@example.com", "dave@partner.example.net"}, mailWith("Q3", "numbers",
		attachment{"q3.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", xlsx}))
	items := g.list(t)
	if len(items) != 1 || items[0].Action != "hold" || items[0].ReleaseAt == nil {
		t.Fatalf("list: %+v", items)
	}
	if n := len(g.hop.Messages()); n != 0 {
		t.Fatalf("next hop got %d messages before hold_for passed", n)
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(g.hop.Messages()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("held mail was not released within 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	msgs := g.hop.Messages()
	if len(msgs[0].To) != 2 {
		t.Errorf("released to %v", msgs[0].To)
	}
	if resp, data := download(t, firstLink(t, msgs[0].Data)); resp.StatusCode != 200 || !bytes.Equal(data, xlsx) {
		t.Fatalf("download: %s", resp.Status)
	}
	waitUntil(t, "released item leaves the list", func() bool { return len(g.list(t)) == 0 })
	rel := g.events(audit.TypeMailReleased)
	if len(rel) != 1 || rel[0]["actor"] != audit.ActorSystem || rel[0]["reason"] != quarantine.ReasonHoldExpired {
		t.Errorf("mail.released: %v", rel)
	}
}

func TestHoldCanBeDeletedBeforeRelease(t *testing.T) {
	g := startPolicyGateway(t, testRules, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.held.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	g.sendHeld(t, "carol@finance.example.com", []string{"dave@partner.example.net"}, mailWith("oops", "wrong recipient",
		attachment{"salaries.pdf", "application/pdf", random(100)}))
	id := g.list(t)[0].ID
	if code := g.adminCall(t, "POST", "/admin/quarantine/"+id+"/delete", opsSecret, nil); code != 200 {
		t.Fatalf("recall: %d", code)
	}
	if n, err := g.held.ReleaseDue(context.Background()); err != nil || n != 0 {
		t.Errorf("ReleaseDue after the recall: %d, %v", n, err)
	}
	if n := len(g.hop.Messages()); n != 0 {
		t.Errorf("recalled mail went out")
	}
}

func yamlDecodeStrict(doc string, v any) error {
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// waitUntil is testsupport.WaitFor.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testsupport.WaitFor(t, what, cond)
}

const mailRuleSet = `
- name: confidential-subject
  match: {subject_regex: "(?i)confidential|社外秘"}
  action: quarantine
- name: many-outsiders
  match: {min_external_recipients: 2, internal_domains: ["example.com"]}
  action: hold
  hold_for: 5m
- name: no-mail-to-rivals
  match: {recipient_domains: ["rival.test"]}
  action: reject
`

// Issue 12.1: message-level rules decide about every mail, also mail
// without any attachment, over real SMTP: a Japanese RFC 2047 subject is
// quarantined, mail to several outsiders is held for the rule's own
// hold_for, an envelope-only reject rule refuses plain mail; other mail
// is relayed.
func TestMailRulesApplyToMailWithoutAttachments(t *testing.T) {
	g := startPolicyGateway(t, mailRuleSet, time.Hour)
	c := g.dial()
	subject := "=?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte("【社外秘】来期の計画")) + "?="
	reply, err := sendReply(c, "alice@example.com", []string{"bob@example.com"}, mailWith(subject, "no files here"))
	if err != nil || !strings.HasPrefix(reply, "2.0.0 Held for review (id ") {
		t.Fatalf("confidential mail: %q, %v", reply, err)
	}
	before := time.Now()
	reply, err = sendReply(c, "alice@example.com", []string{"x@partner.test", "y@other.test", "bob@example.com"}, mailWith("hello", "plain"))
	if err != nil || !strings.HasPrefix(reply, "2.0.0 Held for review (id ") {
		t.Fatalf("mail to two outsiders: %q, %v", reply, err)
	}
	err = sendOn(c, "alice@example.com", []string{"ceo@rival.test"}, mailWith("hi", "plain"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) || !strings.Contains(se.Message, "no-mail-to-rivals") {
		t.Fatalf("mail to a rival: %v, want 550 5.7.1 naming the rule", err)
	}
	if err := sendOn(c, "alice@example.com", []string{"x@partner.test", "bob@example.com"}, mailWith("hello", "one outsider")); err != nil {
		t.Fatalf("ordinary mail: %v", err)
	}
	if msgs := g.hop.Messages(); len(msgs) != 1 || msgs[0].To[0] != "x@partner.test" {
		t.Fatalf("next hop got %d messages, want only the ordinary one", len(msgs))
	}
	items := g.list(t)
	if len(items) != 2 {
		t.Fatalf("held %d messages, want 2: %+v", len(items), items)
	}
	byRule := map[string]heldEntry{}
	for _, it := range items {
		byRule[it.Rule] = it
	}
	if it := byRule["confidential-subject"]; it.Action != "quarantine" || it.ReleaseAt != nil {
		t.Errorf("confidential mail held as %+v", it)
	}
	it := byRule["many-outsiders"]
	if it.Action != "hold" || it.ReleaseAt == nil {
		t.Fatalf("mail to outsiders held as %+v", it)
	}
	at, err := time.Parse(time.RFC3339, *it.ReleaseAt)
	if err != nil {
		t.Fatal(err)
	}
	// The rule's hold_for (5m), not quarantine.hold_for (1h).
	if at.Before(before.Add(5*time.Minute-time.Second)) || at.After(time.Now().Add(5*time.Minute+time.Second)) {
		t.Errorf("release at %s, want 5 minutes after %s", at, before)
	}
	if rej := g.events(audit.TypeMailRejected); len(rej) != 1 || rej[0]["reason"] != "no-mail-to-rivals" {
		t.Errorf("mail.rejected: %v", rej)
	}
}
