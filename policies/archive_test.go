package policies

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/attachgate/attachgate/mailpart"
)

// zipEntry is one file of a test archive.
type zipEntry struct {
	name string
	data []byte
	// encrypted sets the general-purpose flag bit 0 (what ZipCrypto and
	// WinZip AES write); the data stands for the ciphertext.
	encrypted bool
	// raw writes the sizes into the local header (no data descriptor),
	// as most zip tools do; otherwise archive/zip streams it with a data
	// descriptor.
	raw bool
}

func buildZip(t testing.TB, entries ...zipEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, e := range entries {
		fh := &zip.FileHeader{Name: e.name, Method: zip.Store}
		if e.encrypted {
			fh.Flags |= 0x1
		}
		var err error
		var w interface{ Write([]byte) (int, error) }
		if e.raw || e.encrypted {
			fh.CRC32 = crc32.ChecksumIEEE(e.data)
			fh.CompressedSize64 = uint64(len(e.data))
			fh.UncompressedSize64 = uint64(len(e.data))
			if !e.raw {
				fh.Flags |= 0x8 // sizes in a data descriptor
			}
			w, err = zw.CreateRaw(fh)
		} else {
			w, err = zw.CreateHeader(fh)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// EncryptedZip is a password-protected ("PPAP") zip as a test sees it:
// one ZipCrypto-flagged entry.
func EncryptedZip(t testing.TB) []byte {
	return buildZip(t, zipEntry{name: "secret.xlsx", data: []byte("\x8c\x11 twelve-byte header and ciphertext"), encrypted: true, raw: true})
}

func TestArchiveProbe(t *testing.T) {
	big := make([]byte, 1<<20)
	rand.Read(big)
	text := []byte("quarterly numbers\n")
	tests := []struct {
		name string
		data []byte
		want bool
	}{
		{"streamed zip, clean", buildZip(t, zipEntry{name: "a.txt", data: text}, zipEntry{name: "b.bin", data: big}), false},
		{"zip with sizes, clean", buildZip(t, zipEntry{name: "a.txt", data: text, raw: true}, zipEntry{name: "b.txt", data: text, raw: true}), false},
		{"first entry encrypted", buildZip(t, zipEntry{name: "a.txt", data: text, encrypted: true, raw: true}), true},
		{"second entry encrypted, sizes known", buildZip(t, zipEntry{name: "a.txt", data: text, raw: true}, zipEntry{name: "s.txt", data: text, encrypted: true, raw: true}), true},
		{"encrypted entry after a streamed 1 MiB one", buildZip(t, zipEntry{name: "big.bin", data: big}, zipEntry{name: "s.txt", data: text, encrypted: true}), true},
		{"encrypted entry with a data descriptor", buildZip(t, zipEntry{name: "s.txt", data: big, encrypted: true}), true},
		{"empty zip", buildZip(t), false},
		{"encrypted zip behind a prefix (self-extracting)", append([]byte("MZ\x90\x00 stub "+strings.Repeat("x", 5000)), buildZip(t, zipEntry{name: "s.txt", data: text, encrypted: true, raw: true})...), true},
		{"clean zip behind a prefix", append([]byte("MZ stub"), buildZip(t, zipEntry{name: "a.txt", data: text, raw: true})...), false},
		{"not a zip", big, false},
		{"text mentioning PK", []byte("PK\x03\x04 is how a zip starts"), false},
		{"pdf", []byte("%PDF-1.7\n" + strings.Repeat("x", 100)), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		for _, step := range []int{1, 7, 4096, len(tt.data) + 1} {
			if step == 1 && len(tt.data) > 1<<16 {
				continue
			}
			var p ArchiveProbe
			for rest := tt.data; len(rest) > 0; {
				k := min(step, len(rest))
				if n, err := p.Write(rest[:k]); n != k || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
				rest = rest[k:]
			}
			if got := p.Encrypted(); got != tt.want {
				t.Errorf("%s (writes of %d): Encrypted = %v, want %v", tt.name, step, got, tt.want)
			}
			if len(p.ring) > tailSize {
				t.Errorf("%s: tail grew to %d bytes", tt.name, len(p.ring))
			}
		}
	}
}

func TestEncryptedArchiveRule(t *testing.T) {
	e := mustEngine(t, parseRules(t, `
- name: ppap
  match: {encrypted_archive: true, recipient_domains_not: ["example.com"]}
  action: hold
  on_infected: reject
- name: zips
  match: {extensions: [".zip"]}
  action: link
`))
	out := Envelope{From: "a@example.com", To: []string{"x@partner.example.net"}}
	in := Envelope{From: "a@example.com", To: []string{"b@example.com"}}
	zip := Part{Filename: "a.zip", ContentType: "application/zip", Size: SizeUnknown}
	if _, ok := e.Early(out, zip); ok {
		t.Fatal("Early decided before the archive's bytes were seen")
	}
	if d, ok := e.Early(in, zip); !ok || (d.Rule != "zips" || d.Action != Link) {
		t.Fatalf("internal mail: Early = %+v, %v", d, ok)
	}
	enc := zip
	enc.Size, enc.EncryptedArchive = 100, true
	if d := e.Decide(out, enc); d.Rule != "ppap" || d.Action != Hold {
		t.Errorf("encrypted zip to outside: %+v", d)
	}
	plain := zip
	plain.Size = 100
	if d := e.Decide(out, plain); d.Rule != "zips" || d.Action != Link {
		t.Errorf("plain zip: %+v", d)
	}
	if a := e.OnInfected("ppap"); a != Reject {
		t.Errorf("OnInfected(ppap) = %s", a)
	}
	for _, rule := range []string{"zips", "", "nope"} {
		if a := e.OnInfected(rule); a != "" {
			t.Errorf("OnInfected(%q) = %s, want the default", rule, a)
		}
	}
	var nilEngine *Engine
	if a := nilEngine.OnInfected(""); a != "" {
		t.Errorf("nil engine: %s", a)
	}
}

func TestScanFieldsValidation(t *testing.T) {
	tests := []struct {
		name string
		rule Rule
		want string
	}{
		{"bad on_infected", Rule{Name: "r", Action: Link, OnInfected: "link"}, `policies[0].on_infected: want quarantine or reject, got "link"`},
		{"on_infected on a message rule", Rule{Name: "r", Action: Reject, OnInfected: Reject, Match: Match{Signed: true}}, "policies[0].on_infected: a message rule"},
		{"encrypted_archive with signed", Rule{Name: "r", Action: Reject, Match: Match{Signed: true, EncryptedArchive: true}}, "policies[0].match.signed"},
	}
	for _, tt := range tests {
		if _, err := New([]Rule{tt.rule}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	for _, a := range []Action{"", Quarantine, Reject} {
		if _, err := New([]Rule{{Name: "r", Action: Link, OnInfected: a}}); err != nil {
			t.Errorf("on_infected %q: %v", a, err)
		}
	}
}

func TestDryRunShowsEncryptedArchive(t *testing.T) {
	e := mustEngine(t, parseRules(t, `
- name: ppap
  match: {encrypted_archive: true}
  action: quarantine
`))
	mail := testMail(map[string][]byte{"secret.zip": EncryptedZip(t), "plain.zip": buildZip(t, zipEntry{name: "a.txt", data: []byte("hi")})},
		[]string{"plain.zip", "secret.zip"}, map[string]string{"secret.zip": "application/zip", "plain.zip": "application/zip"})
	run, err := e.Test(bytes.NewReader(mail), mailpart.Limits{}, Envelope{From: "a@example.com", To: []string{"b@example.net"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Parts) != 3 || run.Parts[1].EncryptedArchive || !run.Parts[2].EncryptedArchive {
		t.Fatalf("parts: %+v", run.Parts)
	}
	if run.Parts[2].Decision.Rule != "ppap" || run.Parts[2].Decision.Action != Quarantine || run.Verdict.Action != Quarantine {
		t.Fatalf("decision %+v, verdict %+v", run.Parts[2].Decision, run.Verdict)
	}
	var out bytes.Buffer
	run.Write(&out, "1h")
	if !strings.Contains(out.String(), "application/zip (encrypted archive)") || !strings.Contains(out.String(), "quarantine by rule ppap") {
		t.Errorf("dry run output:\n%s", out.String())
	}
}

// FuzzArchiveProbe: the probe never panics, keeps at most its tail,
// answers the same however the bytes are split, and agrees with
// archive/zip: an archive Go's reader opens, with an encrypted entry and a
// central directory that fits the tail, is found.
func FuzzArchiveProbe(f *testing.F) {
	text := []byte("quarterly numbers\n")
	f.Add(buildZip(f, zipEntry{name: "a.txt", data: text, encrypted: true, raw: true}), uint16(7))
	f.Add(buildZip(f, zipEntry{name: "a.txt", data: text}, zipEntry{name: "s.txt", data: text, encrypted: true}), uint16(1))
	f.Add(buildZip(f, zipEntry{name: "a.txt", data: text, raw: true}, zipEntry{name: "b.txt", data: text}), uint16(100))
	f.Add(append([]byte("junk"), buildZip(f, zipEntry{name: "s.txt", data: text, encrypted: true})...), uint16(3))
	f.Add([]byte("PK\x03\x04"), uint16(2))
	f.Fuzz(func(t *testing.T, data []byte, step uint16) {
		var whole, split ArchiveProbe
		whole.Write(data)
		k := int(step%512) + 1
		for rest := data; len(rest) > 0; {
			n := min(k, len(rest))
			split.Write(rest[:n])
			rest = rest[n:]
		}
		got := whole.Encrypted()
		if split.Encrypted() != got {
			t.Fatalf("split in %d-byte writes: %v, whole: %v", k, split.Encrypted(), got)
		}
		if len(whole.ring) > tailSize || len(split.ring) > tailSize {
			t.Fatal("the tail grew")
		}
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil || got {
			return
		}
		for _, f := range zr.File {
			if f.Flags&1 != 0 && len(data) <= tailSize {
				t.Fatalf("archive/zip sees encrypted entry %q; the probe does not", f.Name)
			}
		}
	})
}

// TestEncryptedArchiveIsAnAttachmentRule: a rule with only
// encrypted_archive is decided per attachment, never as a mail rule that
// would hold every message.
func TestEncryptedArchiveIsAnAttachmentRule(t *testing.T) {
	e := mustEngine(t, parseRules(t, `
- name: ppap
  match: {encrypted_archive: true}
  action: hold
`))
	env := Envelope{From: "a@example.com", To: []string{"b@example.net"}}
	if d := e.DecideMail(env, Mail{Subject: "hi"}); d.Action != Link {
		t.Fatalf("mail without attachments: %+v", d)
	}
	plain := Part{Filename: "a.zip", Size: 10}
	if d := e.DecideMail(env, Mail{Attachments: []Part{plain}}); d.Action != Link {
		t.Fatalf("mail with a plain zip: %+v", d)
	}
	if _, err := New([]Rule{{Name: "r", Action: Hold, Match: Match{EncryptedArchive: true, SubjectRegex: "x"}}}); err == nil ||
		!strings.Contains(err.Error(), "policies[0].match.encrypted_archive: combines only with attachment and envelope fields") {
		t.Fatalf("encrypted_archive with a mail field: %v", err)
	}
}
