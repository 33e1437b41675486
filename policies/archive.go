package policies

import "encoding/binary"

// ArchiveProbe tells, from an attachment's bytes as they stream past,
// whether it is a ZIP archive with encrypted entries (a password-protected
// zip, which no scanner can look into). Write the decoded attachment to
// it, then ask Encrypted. It never holds the file: it follows the local
// file headers as they pass (an entry's general-purpose flag bit 0 is its
// encryption flag), and it keeps the last 64 KiB, in a ring, to read the
// central directory there at the end, as unzip tools find it (whatever the
// local headers say, and also for a zip behind a prefix, such as a
// self-extracting archive).
//
// Only ZIP (and what is built on it: AES-encrypted WinZip entries set the
// same flag) is recognised; 7z and RAR archives are not.
type ArchiveProbe struct {
	off  int64 // bytes seen
	next int64 // offset of the next header; -1: not following headers
	hdr  []byte
	// encrypted: an entry's flag said so.
	encrypted bool
	// ring holds the last tailSize bytes: written at ring[pos%tailSize],
	// pos bytes in all.
	ring []byte
	pos  int64
}

const (
	localSig   = "PK\x03\x04"
	centralSig = "PK\x01\x02"
	endSig     = "PK\x05\x06"
	localLen   = 30
	centralLen = 46
	endLen     = 22
	tailSize   = 64<<10 + endLen
)

// Write inspects p; it never fails.
func (a *ArchiveProbe) Write(p []byte) (int, error) {
	n := len(p)
	if a.encrypted {
		return n, nil
	}
	for len(p) > 0 && a.next >= 0 && !a.encrypted {
		if a.off < a.next {
			skip := min(int64(len(p)), a.next-a.off)
			a.keepTail(p[:skip])
			a.off += skip
			p = p[skip:]
			continue
		}
		// At a header: gather its fixed part.
		want := localLen
		if len(a.hdr) >= 4 && string(a.hdr[:4]) == centralSig {
			want = centralLen
		}
		k := min(len(p), want-len(a.hdr))
		a.hdr = append(a.hdr, p[:k]...)
		a.keepTail(p[:k])
		a.off += int64(k)
		p = p[k:]
		if len(a.hdr) < 4 {
			continue
		}
		if sig := string(a.hdr[:4]); sig == centralSig && want == localLen {
			continue // now gathering the longer central header
		}
		if len(a.hdr) < want {
			continue
		}
		a.header()
	}
	if len(p) > 0 {
		a.keepTail(p)
		a.off += int64(len(p))
	}
	return n, nil
}

// header reads the fixed part of a header in a.hdr, which started at
// offset a.off-len(a.hdr), and finds the next one.
func (a *ArchiveProbe) header() {
	h := a.hdr
	start := a.off - int64(len(h))
	le := binary.LittleEndian
	a.hdr = a.hdr[:0]
	switch string(h[:4]) {
	case localSig:
		flags := le.Uint16(h[6:])
		if flags&1 != 0 {
			a.encrypted = true
			return
		}
		csize := le.Uint32(h[18:])
		if flags&8 != 0 || csize == 0xffffffff {
			a.lose() // size in a data descriptor or zip64 extra
			return
		}
		a.next = start + localLen + int64(le.Uint16(h[26:])) + int64(le.Uint16(h[28:])) + int64(csize)
	case centralSig:
		if le.Uint16(h[8:])&1 != 0 {
			a.encrypted = true
			return
		}
		a.next = start + centralLen + int64(le.Uint16(h[28:])) + int64(le.Uint16(h[30:])) + int64(le.Uint16(h[32:]))
	default:
		// Not a zip from its first byte (maybe one behind a prefix:
		// the tail tells), the end of the central directory, or
		// something else: every entry passed already.
		a.next = -1
	}
}

// lose stops following headers; the central directory at the end decides.
func (a *ArchiveProbe) lose() { a.next = -1 }

// keepTail remembers the last tailSize bytes.
func (a *ArchiveProbe) keepTail(p []byte) {
	if a.ring == nil {
		a.ring = make([]byte, tailSize)
	}
	if len(p) > tailSize {
		a.pos += int64(len(p) - tailSize)
		p = p[len(p)-tailSize:]
	}
	for len(p) > 0 {
		i := int(a.pos % tailSize)
		k := copy(a.ring[i:], p)
		a.pos += int64(k)
		p = p[k:]
	}
}

// tail is the last bytes kept, in order.
func (a *ArchiveProbe) tail() []byte {
	if a.pos <= tailSize {
		return a.ring[:a.pos]
	}
	i := int(a.pos % tailSize)
	return append(append(make([]byte, 0, tailSize), a.ring[i:]...), a.ring[:i]...)
}

// Encrypted reports whether what was written is a ZIP archive with an
// encrypted entry. Call it after the last Write.
func (a *ArchiveProbe) Encrypted() bool {
	if a.encrypted {
		return true
	}
	if a.pos < endLen {
		return false
	}
	// The end-of-central-directory record, searched from the end (it may
	// carry a comment), and the central directory it points to: where
	// its size says (just before it) and where its offset says (for a
	// zip behind a prefix, the size is what tells). Every candidate
	// counts: a tool that reads another one must not see an encrypted
	// entry we missed.
	t := a.tail()
	base := a.pos - int64(len(t)) // file offset of t[0]
	le := binary.LittleEndian
	for i := len(t) - endLen; i >= 0; i-- {
		if string(t[i:i+4]) != endSig || int(le.Uint16(t[i+20:])) > len(t)-i-endLen {
			continue
		}
		size, off := int64(le.Uint32(t[i+12:])), int64(le.Uint32(t[i+16:]))
		if le.Uint16(t[i+10:]) == 0xffff || size == 0xffff || off == 0xffffffff {
			// zip64: the locator before this record names the zip64
			// end record, which holds the real size and offset.
			if j := i - 20; j >= 0 && string(t[j:j+4]) == "PK\x06\x07" {
				if k := int64(le.Uint64(t[j+8:])) - base; k >= 0 && k+56 <= int64(len(t)) && string(t[k:k+4]) == "PK\x06\x06" {
					size, off = int64(le.Uint64(t[k+40:])), int64(le.Uint64(t[k+48:]))
					if a.directoryEncrypted(t, k-size, k) || a.directoryEncrypted(t, off-base, k) {
						return true
					}
				}
			}
		}
		if a.directoryEncrypted(t, int64(i)-size, int64(i)) || a.directoryEncrypted(t, off-base, int64(i)) {
			return true
		}
	}
	return false
}

// directoryEncrypted reads central directory records from t[start:] while
// they come, up to end, and reports whether one is flagged encrypted.
func (a *ArchiveProbe) directoryEncrypted(t []byte, start, end int64) bool {
	if start < 0 || start > end || end > int64(len(t)) {
		return false
	}
	le := binary.LittleEndian
	dir := t[start:]
	for len(dir) >= centralLen && string(dir[:4]) == centralSig {
		if le.Uint16(dir[8:])&1 != 0 {
			a.encrypted = true
			return true
		}
		n := centralLen + int(le.Uint16(dir[28:])) + int(le.Uint16(dir[30:])) + int(le.Uint16(dir[32:]))
		if n > len(dir) {
			break
		}
		dir = dir[n:]
	}
	return false
}
