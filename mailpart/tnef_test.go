package mailpart

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"io"
	"strings"
	"testing"
	"unicode/utf16"
)

// tnefAttr appends one TNEF attribute with its checksum.
func tnefAttr(b *bytes.Buffer, level byte, id uint32, data []byte) {
	b.WriteByte(level)
	binary.Write(b, binary.LittleEndian, id)
	binary.Write(b, binary.LittleEndian, uint32(len(data)))
	b.Write(data)
	var sum uint16
	for _, c := range data {
		sum += uint16(c)
	}
	binary.Write(b, binary.LittleEndian, sum)
}

// tnefProp is one MAPI property of attAttachment.
type tnefProp struct {
	id   uint16
	typ  uint16 // 0x1E string8, 0x1F unicode, 0x03 long, 0x102 binary
	str  string
	long uint32
}

func mapiProps(props []tnefProp) []byte {
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	le(uint32(len(props)))
	for _, p := range props {
		le(uint32(p.typ) | uint32(p.id)<<16)
		var val []byte
		switch p.typ {
		case 0x03:
			le(p.long)
			continue
		case 0x1F:
			for _, u := range utf16.Encode([]rune(p.str + "\x00")) {
				val = binary.LittleEndian.AppendUint16(val, u)
			}
		default:
			val = []byte(p.str + "\x00")
		}
		le(uint32(1))
		le(uint32(len(val)))
		b.Write(val)
		b.Write(make([]byte, (4-len(val)%4)%4))
	}
	return b.Bytes()
}

// tnefFileSpec is one file of a test winmail.dat.
type tnefFileSpec struct {
	title, long, mimeTag string
	unicode              bool
	data                 []byte
}

// buildTNEF writes a winmail.dat as Outlook does: per file RendData,
// Title, Data, then the MAPI properties with the long name.
func buildTNEF(codepage uint32, files ...tnefFileSpec) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint32(tnefSignature))
	binary.Write(&b, binary.LittleEndian, uint16(0x1234))
	tnefAttr(&b, tnefLevelMessage, 0x00089006, []byte{0, 0, 1, 0})
	cp := make([]byte, 8)
	binary.LittleEndian.PutUint32(cp, codepage)
	tnefAttr(&b, tnefLevelMessage, attOemCodepage, cp)
	tnefAttr(&b, tnefLevelMessage, 0x00078008, []byte("IPM.Microsoft Mail.Note\x00"))
	for _, f := range files {
		tnefAttr(&b, tnefLevelAttachment, attAttachRendData, make([]byte, 14))
		tnefAttr(&b, tnefLevelAttachment, attAttachTitle, []byte(f.title+"\x00"))
		tnefAttr(&b, tnefLevelAttachment, 0x00038013, make([]byte, 14)) // attAttachModifyDate
		tnefAttr(&b, tnefLevelAttachment, attAttachData, f.data)
		props := []tnefProp{{id: 0x3705, typ: 0x03, long: 1}} // PR_ATTACH_METHOD
		if f.long != "" {
			typ := uint16(0x1E)
			if f.unicode {
				typ = 0x1F
			}
			props = append(props, tnefProp{id: mapiAttachLongFilename, typ: typ, str: f.long})
		}
		props = append(props, tnefProp{id: 0x3702, typ: 0x102, str: "\x01\x02\x03"}) // PR_ATTACH_ENCODING
		if f.mimeTag != "" {
			props = append(props, tnefProp{id: mapiAttachMimeTag, typ: 0x1E, str: f.mimeTag})
		}
		tnefAttr(&b, tnefLevelAttachment, attAttachment, mapiProps(props))
	}
	return b.Bytes()
}

func readTNEF(t testing.TB, data []byte, chunk int) []tnefFileSpec {
	t.Helper()
	tr, _, ok := openTNEF(&chunkReader{r: bytes.NewReader(data), n: chunk})
	if !ok {
		t.Fatal("not TNEF")
	}
	var got []tnefFileSpec
	for {
		f, err := tr.next()
		if err != nil {
			return got
		}
		b, err := io.ReadAll(f.data)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, tnefFileSpec{long: f.Name, mimeTag: f.MediaType, data: b})
	}
}

type chunkReader struct {
	r *bytes.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

// Issue 9.18: the files inside winmail.dat, under the names clients show.
func TestTNEFReader(t *testing.T) {
	xlsx := bytes.Repeat([]byte("PK\x03\x04budget"), 5000)
	data := buildTNEF(1252,
		tnefFileSpec{title: "BUDGET~1.XLS", long: "budget 2026.xlsx", data: xlsx},
		tnefFileSpec{title: "r\xe9sum\xe9.pdf", data: []byte("%PDF-1.4 cv"), mimeTag: "application/pdf"},
		tnefFileSpec{title: "JP~1.TXT", long: "日本語の資料.txt", unicode: true, data: []byte("こんにちは")},
	)
	for _, chunk := range []int{1, 7, 1 << 20} {
		got := readTNEF(t, data, chunk)
		if len(got) != 3 {
			t.Fatalf("chunk %d: %d files", chunk, len(got))
		}
		want := []struct{ name, mt string }{
			{"budget 2026.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
			{"résumé.pdf", "application/pdf"},
			{"日本語の資料.txt", "text/plain"},
		}
		for i, w := range want {
			if got[i].long != w.name || got[i].mimeTag != w.mt {
				t.Errorf("chunk %d file %d: %q %q, want %q %q", chunk, i, got[i].long, got[i].mimeTag, w.name, w.mt)
			}
		}
		if !bytes.Equal(got[0].data, xlsx) || string(got[1].data) != "%PDF-1.4 cv" || string(got[2].data) != "こんにちは" {
			t.Errorf("chunk %d: file bytes differ", chunk)
		}
	}
	// Truncated inside the first file: what is there, no error.
	got := readTNEF(t, data[:200], 1<<20)
	if len(got) != 1 || !bytes.HasPrefix(xlsx, got[0].data) {
		t.Errorf("truncated: %d files", len(got))
	}
	if _, _, ok := openTNEF(strings.NewReader("PK\x03\x04 not tnef")); ok {
		t.Error("zip taken for TNEF")
	}
}

func tnefMail(winmail []byte) string {
	return crlfText("From: a@example.com\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"+
		"--b\nContent-Type: text/plain\n\nSee attached.\n"+
		"--b\nContent-Type: application/ms-tnef; name=\"winmail.dat\"\nContent-Disposition: attachment; filename=\"winmail.dat\"\nContent-Transfer-Encoding: base64\n\n") +
		base64.StdEncoding.EncodeToString(winmail) + "\r\n--b--\r\n"
}

func TestWalkOpensTNEF(t *testing.T) {
	winmail := buildTNEF(1252,
		tnefFileSpec{title: "BUDGET~1.XLS", long: "budget.xlsx", data: []byte("PK xlsx")},
		tnefFileSpec{title: "notes.txt", data: []byte("notes")})
	msg := tnefMail(winmail)
	var seen []Part
	sum, err := Walk(strings.NewReader(msg), Limits{}, func(p *Part, body io.Reader) error {
		before := *p
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		if p.Attachment {
			if !before.Provisional || p.Provisional {
				t.Errorf("%s: provisional before %v after %v", p.Path, before.Provisional, p.Provisional)
			}
			if p.Path == "1.2.t1" && (before.Filename != "BUDGET~1.XLS" || string(b) != "PK xlsx") {
				t.Errorf("first file: %q %q", before.Filename, b)
			}
		}
		seen = append(seen, *p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || sum.Attachments != 2 {
		t.Fatalf("%d parts, %d attachments: %+v", len(seen), sum.Attachments, seen)
	}
	if seen[1].Path != "1.2.t1" || seen[1].Filename != "budget.xlsx" || seen[1].Container != "1.2" ||
		seen[2].Path != "1.2.t2" || seen[2].Filename != "notes.txt" || seen[2].MediaType != "text/plain" {
		t.Errorf("files: %+v", seen[1:])
	}
	// Linking a file inside takes winmail.dat out; the text stays.
	out := rewriteString(t, msg, map[string]bool{"1.2.t1": true, "1.2.t2": true}, testNotice("budget.xlsx", "notes.txt"))
	gm := parseWithGoMessage(t, out)
	if len(gm) != 1 || strings.Contains(out, "winmail.dat") || !strings.HasPrefix(gm[0].Text, "See attached.") {
		t.Errorf("rewrite:\n%s", out)
	}
	// A winmail.dat that is not TNEF is an ordinary attachment.
	parts, _ := walkAll(t, tnefMail([]byte("not tnef at all")), Limits{})
	if len(parts) != 2 || parts[1].Filename != "winmail.dat" || string(parts[1].Body) != "not tnef at all" {
		t.Errorf("non-TNEF winmail.dat: %+v", parts)
	}
}

// FuzzTNEF: the reader never fails or loops on any input, hands out at
// most the bytes it was given, and names are clean.
func FuzzTNEF(f *testing.F) {
	f.Add(buildTNEF(1252, tnefFileSpec{title: "a.txt", long: "long name.txt", data: []byte("x")}))
	f.Add(buildTNEF(932, tnefFileSpec{title: "\x93\xfa\x96{.txt", data: []byte("y"), mimeTag: "text/plain"}, tnefFileSpec{title: "b", unicode: true, long: "b.bin"}))
	f.Add([]byte("\x78\x9f\x3e\x22\x00\x00\x02\x0f\x80\x06\x00\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, _, ok := openTNEF(bytes.NewReader(data))
		if !ok {
			return
		}
		total := 0
		for i := 0; ; i++ {
			if i > len(data) {
				t.Fatal("more files than input bytes")
			}
			file, err := tr.next()
			if err != nil {
				break
			}
			n, err := io.Copy(io.Discard, file.data)
			if err != nil {
				t.Fatal(err)
			}
			total += int(n)
			if !utf8Valid(file.Name) || len(file.Name) > maxFilenameBytes || strings.ContainsAny(file.Name, "/\\\x00") {
				t.Fatalf("bad name %q", file.Name)
			}
			if !validMediaType(file.MediaType) {
				t.Fatalf("bad media type %q", file.MediaType)
			}
		}
		if total > len(data) {
			t.Fatalf("%d file bytes from %d input bytes", total, len(data))
		}
	})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }
