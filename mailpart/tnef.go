package mailpart

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"mime"
	"path"
	"strings"
	"unicode/utf16"
)

// TNEF (Outlook's winmail.dat, application/ms-tnef; MS-OXTNEF).
//
// A TNEF stream is a signature, a key, and attributes: level (1 message,
// 2 attachment), id, length, data, checksum. Each attached file starts at
// attAttachRendData, may have a title (attAttachTitle), its bytes
// (attAttachData) and MAPI properties after them (attAttachment), where the
// long file name (PidTagAttachLongFilename) and MIME type live. Clients
// show the long file name when there is one, so a policy must see it too.
//
// The reader streams: a file's bytes are read straight from the message.
// Its name is known for sure only after them (the properties come last), so
// a file is handed out with the title as a provisional name, and the final
// name is set when its bytes have been read to the end, before the reader
// reports io.EOF (tnefFile.data). Lengths are not trusted: every read is
// bounded by what the stream really holds, and a truncated or malformed
// stream ends the list of files instead of failing the message.

const (
	tnefSignature = 0x223E9F78

	tnefLevelMessage    = 1
	tnefLevelAttachment = 2

	attAttachRendData = 0x00069002
	attAttachTitle    = 0x00018010
	attAttachData     = 0x0006800F
	attAttachment     = 0x00069005
	attOemCodepage    = 0x00069007

	mapiAttachFilename     = 0x3704
	mapiAttachLongFilename = 0x3707
	mapiAttachMimeTag      = 0x370E

	// maxTNEFString bounds a title or property string that is read; longer
	// ones are skipped.
	maxTNEFString = 4096
	// maxTNEFProps bounds the properties parsed in one attAttachment.
	maxTNEFProps = 4096
)

// isTNEF reports whether a part is a TNEF container.
func isTNEF(p *Part) bool {
	switch p.MediaType {
	case "application/ms-tnef", "application/vnd.ms-tnef":
		return true
	case "application/octet-stream":
		return strings.EqualFold(p.Filename, "winmail.dat")
	}
	return false
}

// tnefReader reads the attached files of a TNEF stream.
type tnefReader struct {
	br       *bufio.Reader
	codepage uint32
	title    []byte // of the attachment being read
	done     bool
}

// tnefFile is one attached file. Name and MediaType are final once data
// returned io.EOF.
type tnefFile struct {
	Name      string
	MediaType string
	data      *tnefData
}

// openTNEF checks the signature. ok is false when r is not TNEF; br then
// still holds everything read, to be used instead of r.
func openTNEF(r io.Reader) (t *tnefReader, br *bufio.Reader, ok bool) {
	br = bufio.NewReaderSize(r, 32<<10)
	head, err := br.Peek(6)
	if err != nil || binary.LittleEndian.Uint32(head) != tnefSignature {
		return nil, br, false
	}
	br.Discard(6)
	return &tnefReader{br: br}, br, true
}

// attrHeader reads the next attribute's level, id and length.
func (t *tnefReader) attrHeader() (level byte, id, length uint32, err error) {
	var h [9]byte
	if _, err := io.ReadFull(t.br, h[:]); err != nil {
		return 0, 0, 0, err
	}
	return h[0], binary.LittleEndian.Uint32(h[1:5]), binary.LittleEndian.Uint32(h[5:9]), nil
}

// peekAttr returns the next attribute's level and id without reading it.
func (t *tnefReader) peekAttr() (level byte, id uint32, ok bool) {
	h, err := t.br.Peek(9)
	if err != nil {
		return 0, 0, false
	}
	return h[0], binary.LittleEndian.Uint32(h[1:5]), true
}

// skip discards n bytes and the checksum after them.
func (t *tnefReader) skip(n uint32) error {
	if _, err := t.br.Discard(int(n) + 2); err != nil {
		return err
	}
	return nil
}

// readValue reads an attribute's data of at most max bytes and its
// checksum; longer data is skipped (nil).
func (t *tnefReader) readValue(n uint32, max int) ([]byte, error) {
	if int64(n) > int64(max) {
		return nil, t.skip(n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(t.br, b); err != nil {
		return nil, err
	}
	_, err := t.br.Discard(2)
	return b, err
}

// next returns the next attached file, or io.EOF when there is none.
// The previous file's data must have been read to the end.
func (t *tnefReader) next() (*tnefFile, error) {
	for !t.done {
		level, id, n, err := t.attrHeader()
		if err != nil {
			t.done = true
			break
		}
		switch {
		case id == attAttachRendData:
			t.title = nil
			err = t.skip(n)
		case id == attAttachTitle:
			t.title, err = t.readValue(n, maxTNEFString)
		case id == attOemCodepage && level == tnefLevelMessage:
			var b []byte
			if b, err = t.readValue(n, 64); err == nil && len(b) >= 4 {
				t.codepage = binary.LittleEndian.Uint32(b)
			}
		case id == attAttachData && level == tnefLevelAttachment:
			name := t.decodeString(t.title)
			f := &tnefFile{Name: name, MediaType: mediaTypeByName(name)}
			f.data = &tnefData{t: t, f: f, r: io.LimitedReader{R: t.br, N: int64(n)}}
			return f, nil
		default:
			err = t.skip(n)
		}
		if err != nil {
			t.done = true
		}
	}
	return nil, io.EOF
}

// finish reads what follows a file's bytes up to the next file or
// message attribute: its checksum and its MAPI properties, for the long
// name and the MIME type.
func (t *tnefReader) finish(f *tnefFile) {
	if _, err := t.br.Discard(2); err != nil {
		t.done = true
		return
	}
	for {
		level, id, ok := t.peekAttr()
		if !ok || level != tnefLevelAttachment || id == attAttachRendData || id == attAttachData {
			return
		}
		_, _, n, err := t.attrHeader()
		if err != nil {
			t.done = true
			return
		}
		switch id {
		case attAttachment:
			lr := &io.LimitedReader{R: t.br, N: int64(n)}
			long, short, mimeTag := t.attachProps(lr)
			if _, err := io.Copy(io.Discard, lr); err != nil || lr.N > 0 {
				t.done = true
				return
			}
			if _, err := t.br.Discard(2); err != nil {
				t.done = true
				return
			}
			switch {
			case long != "":
				f.Name = long
			case short != "" && f.Name == "":
				f.Name = short
			}
			if mt, _, err := mime.ParseMediaType(mimeTag); err == nil && validMediaType(mt) {
				f.MediaType = mt
			} else {
				f.MediaType = mediaTypeByName(f.Name)
			}
		default:
			if err := t.skip(n); err != nil {
				t.done = true
				return
			}
		}
	}
}

// attachProps parses MAPI properties (MS-OXTNEF 2.1.3.4) for the file
// names and MIME tag; parsing stops at the first inconsistency.
func (t *tnefReader) attachProps(r io.Reader) (long, short, mimeTag string) {
	u32 := func() (uint32, bool) {
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, false
		}
		return binary.LittleEndian.Uint32(b[:]), true
	}
	skip := func(n int64) bool {
		m, err := io.CopyN(io.Discard, r, n)
		return err == nil && m == n
	}
	pad := func(n uint32) int64 { return int64((4 - n%4) % 4) }
	count, ok := u32()
	if !ok || count > maxTNEFProps {
		return
	}
	for i := uint32(0); i < count; i++ {
		tag, ok := u32()
		if !ok {
			return
		}
		typ, id := tag&0xffff, tag>>16
		if id >= 0x8000 { // named property: GUID, kind, id or name
			if !skip(16) {
				return
			}
			kind, ok := u32()
			if !ok {
				return
			}
			if kind == 0 {
				if !skip(4) {
					return
				}
			} else {
				n, ok := u32()
				if !ok || !skip(int64(n)+pad(n)) {
					return
				}
			}
		}
		multi := typ&0x1000 != 0
		typ &^= 0x1000
		values := uint32(1)
		if multi || isVariableMAPIType(typ) {
			if values, ok = u32(); !ok || values > maxTNEFProps {
				return
			}
		}
		for v := uint32(0); v < values; v++ {
			if size := fixedMAPISize(typ); size > 0 {
				if !skip(size) {
					return
				}
				continue
			}
			if !isVariableMAPIType(typ) {
				return // unknown type: the rest cannot be parsed
			}
			n, ok := u32()
			if !ok {
				return
			}
			want := v == 0 && !multi && (id == mapiAttachLongFilename || id == mapiAttachFilename || id == mapiAttachMimeTag)
			if !want || n > maxTNEFString {
				if !skip(int64(n) + pad(n)) {
					return
				}
				continue
			}
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil || !skip(pad(n)) {
				return
			}
			var s string
			if typ == 0x001F {
				s = utf16String(b)
			} else {
				s = t.decodeString(b)
			}
			switch id {
			case mapiAttachLongFilename:
				long = s
			case mapiAttachFilename:
				short = s
			case mapiAttachMimeTag:
				mimeTag = s
			}
		}
	}
	return
}

func isVariableMAPIType(typ uint32) bool {
	switch typ {
	case 0x001E, 0x001F, 0x0102, 0x000D: // STRING8, UNICODE, BINARY, OBJECT
		return true
	}
	return false
}

// fixedMAPISize is the padded size of a fixed-size MAPI value, 0 for
// others.
func fixedMAPISize(typ uint32) int64 {
	switch typ {
	case 0x0002, 0x0003, 0x0004, 0x000A, 0x000B: // SHORT, LONG, FLOAT, ERROR, BOOLEAN
		return 4
	case 0x0005, 0x0006, 0x0007, 0x0014, 0x0040: // DOUBLE, CURRENCY, APPTIME, I8, SYSTIME
		return 8
	case 0x0048: // CLSID
		return 16
	}
	return 0
}

// decodeString decodes an 8-bit TNEF string (NUL-terminated) in the
// stream's code page.
func (t *tnefReader) decodeString(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	if len(b) == 0 {
		return ""
	}
	return sanitizeFilename(decodeBytes(codepageCharset(t.codepage), b))
}

func utf16String(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return sanitizeFilename(string(utf16.Decode(u)))
}

// codepageCharset names the charset of a Windows code page ("" unknown:
// the bytes are sniffed).
func codepageCharset(cp uint32) string {
	switch cp {
	case 932:
		return "shift_jis"
	case 936:
		return "gbk"
	case 949:
		return "euc-kr"
	case 950:
		return "big5"
	case 1250, 1251, 1252, 1253, 1254, 1255, 1256, 1257, 1258:
		return "windows-" + itoa(cp)
	case 65001:
		return "utf-8"
	}
	return ""
}

func itoa(n uint32) string {
	var b [10]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// mediaTypeByName guesses a file's media type from its extension.
func mediaTypeByName(name string) string {
	if mt, _, err := mime.ParseMediaType(mime.TypeByExtension(strings.ToLower(path.Ext(name)))); err == nil && validMediaType(mt) {
		return mt
	}
	return "application/octet-stream"
}

// tnefData streams one file's bytes; at their end it reads the file's
// properties, so Name and MediaType are final when it returns io.EOF.
type tnefData struct {
	t        *tnefReader
	f        *tnefFile
	r        io.LimitedReader
	finished bool
	onFinal  func(*tnefFile)
}

func (d *tnefData) Read(p []byte) (int, error) {
	if d.finished {
		return 0, io.EOF
	}
	n, err := d.r.Read(p)
	if n > 0 && !errors.Is(err, io.EOF) {
		return n, err
	}
	if d.r.N > 0 {
		if err == nil || errors.Is(err, io.EOF) {
			if n > 0 {
				return n, nil
			}
			// Truncated: the stream ended inside the file.
			d.t.done = true
			d.final()
			return 0, io.EOF
		}
		return n, err
	}
	d.t.finish(d.f)
	d.final()
	if n > 0 {
		return n, nil
	}
	return 0, io.EOF
}

func (d *tnefData) final() {
	d.finished = true
	if d.onFinal != nil {
		d.onFinal(d.f)
	}
}
