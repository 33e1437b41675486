package notify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/textproto"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/notify/mailtmpl"
	"github.com/attachgate/attachgate/redistest"
	"github.com/attachgate/attachgate/store"
	"github.com/attachgate/attachgate/store/redisstore"
	"github.com/attachgate/attachgate/vault"
)

var tokyo = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		panic(err)
	}
	return loc
}()

func newRing(t testing.TB, dir string) *vault.KeyRing {
	t.Helper()
	ring, err := vault.OpenKeyRing(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatalf("key ring: %v", err)
	}
	return ring
}

func newComposer(t testing.TB, lang string, ring *vault.KeyRing) *Composer {
	t.Helper()
	set, err := mailtmpl.Load("", tokyo)
	if err != nil {
		t.Fatalf("templates: %v", err)
	}
	c, err := NewComposer(ComposerOptions{Templates: set, Hostname: "gw.corp.example",
		From: "Attachgate <attachgate@corp.example>", Language: lang, MarkerKey: ring.MACKey()})
	if err != nil {
		t.Fatalf("composer: %v", err)
	}
	return c
}

// newAudit opens a real SQLite audit log.
func newAudit(t testing.TB) audit.Log {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "attachgate.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	log, err := audit.NewSQLite(st.DB(), audit.Options{Location: tokyo})
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	return log
}

// exported is one audit event as the JSONL export shows it.
type exported struct {
	Type       string   `json:"type"`
	Actor      string   `json:"actor"`
	MessageID  string   `json:"message_id"`
	HeaderID   string   `json:"header_id"`
	Sender     string   `json:"sender"`
	Recipients []string `json:"recipients"`
	Reason     string   `json:"reason"`
	Reply      string   `json:"reply"`
	Detail     string   `json:"detail"`
}

func auditEvents(t testing.TB, log audit.Log, types ...audit.EventType) []exported {
	t.Helper()
	var buf bytes.Buffer
	if err := log.Export(context.Background(), audit.Query{Types: typeNames(types)}, &buf, "jsonl", false); err != nil {
		t.Fatalf("audit export: %v", err)
	}
	var out []exported
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		var e exported
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// render writes a composed mail and checks what every gateway mail must be
// on the wire: CRLF line ends only, no line over 998 bytes, 7-bit.
func render(t testing.TB, m *Mail) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf); err != nil {
		t.Fatalf("write mail: %v", err)
	}
	checkWire(t, buf.Bytes())
	return buf.Bytes()
}

func checkWire(t testing.TB, b []byte) {
	t.Helper()
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		t.Errorf("mail does not end in CRLF")
	}
	for i, line := range bytes.Split(b, []byte("\r\n")) {
		if len(line) > 998 {
			t.Errorf("line %d is %d bytes long (max 998)", i+1, len(line))
		}
		if j := bytes.IndexAny(line, "\r\n"); j >= 0 {
			t.Errorf("line %d has a bare CR or LF at %d: %q", i+1, j, line)
		}
		for _, c := range line {
			if c >= 0x80 || (c < 0x20 && c != '\t') {
				t.Errorf("line %d has byte %#x (mail must be 7-bit): %q", i+1, c, line)
				break
			}
		}
	}
}

// part is one leaf or multipart entity read back with go-message.
type part struct {
	header message.Header
	body   string // decoded
	parts  []part
}

func parse(t testing.TB, raw []byte) part {
	t.Helper()
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("go-message cannot read the mail: %v", err)
	}
	return readEntity(t, e)
}

func readEntity(t testing.TB, e *message.Entity) part {
	t.Helper()
	p := part{header: e.Header}
	if mr := e.MultipartReader(); mr != nil {
		for {
			child, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("next part: %v", err)
			}
			p.parts = append(p.parts, readEntity(t, child))
		}
		return p
	}
	b, err := io.ReadAll(e.Body)
	if err != nil {
		t.Fatalf("read part body: %v", err)
	}
	p.body = string(b)
	return p
}

func (p part) contentType(t testing.TB) (string, map[string]string) {
	t.Helper()
	ct, params, err := p.header.ContentType()
	if err != nil {
		t.Fatalf("content type %q: %v", p.header.Get("Content-Type"), err)
	}
	return ct, params
}

// statusBlocks reads a message/delivery-status body as its field blocks.
func statusBlocks(t testing.TB, body string) []textproto.Header {
	t.Helper()
	br := bufio.NewReader(strings.NewReader(body))
	var out []textproto.Header
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return out
		}
		h, err := textproto.ReadHeader(br)
		if err != nil {
			t.Fatalf("delivery-status block %d: %v", len(out)+1, err)
		}
		out = append(out, h)
	}
}

// newRedisAudit opens the audit log of the Redis backend on a real
// redis-server started for the test.
func newRedisAudit(t testing.TB) audit.Log {
	t.Helper()
	srv := redistest.Start(t)
	st, err := redisstore.Open(context.Background(), redisstore.Options{URL: srv.URL(), KeyPrefix: "notifytest:"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log, err := audit.NewRedis(st.Client(), st.KeyPrefix(), audit.Options{Location: tokyo})
	if err != nil {
		t.Fatal(err)
	}
	return log
}

func typeNames(types []audit.EventType) []string {
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = string(t)
	}
	return names
}
