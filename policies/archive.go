package policies

import (
	"bytes"
	"encoding/binary"
)

// ArchiveProbe tells, from an attachment's bytes as they stream past,
// whether it is a ZIP archive with encrypted entries (a password-protected
// zip, which no scanner can look into). Write the decoded attachment to
// it, then ask Encrypted. It never holds the file: it follows the local
// file headers as they pass (an entry's general-purpose flag bit 0 is its
// encryption flag), and when an entry's size is not in its header (a
// streamed zip, sizes in a trailing data descriptor) it keeps only the last
// 64 KiB and reads the central directory there at the end.
//
// Only ZIP (and what is built on it: AES-encrypted WinZip entries set the
// same flag) is recognised; 7z and RAR archives are not.
type ArchiveProbe struct {
	off  int64 // bytes seen
	next int64 // offset of the next header; -1: not following headers
	hdr  []byte
	// encrypted: an entry's flag said so.
	encrypted bool
	notZip    bool
	// tail holds the last tailSize bytes once the headers are lost.
	tail []byte
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
	if a.encrypted || a.notZip {
		a.off += int64(n)
		return n, nil
	}
	for len(p) > 0 && a.next >= 0 && !a.encrypted && !a.notZip {
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
		if start == 0 {
			a.notZip = true
			return
		}
		// The end of the central directory, or something else: every
		// entry passed already.
		a.next = -1
	}
}

// lose stops following headers; the central directory at the end decides.
func (a *ArchiveProbe) lose() {
	a.next = -1
	if a.tail == nil {
		a.tail = make([]byte, 0, tailSize)
	}
}

// keepTail remembers the last tailSize bytes once the headers are lost.
func (a *ArchiveProbe) keepTail(p []byte) {
	if a.tail == nil {
		return
	}
	if len(p) >= tailSize {
		a.tail = append(a.tail[:0], p[len(p)-tailSize:]...)
		return
	}
	if over := len(a.tail) + len(p) - tailSize; over > 0 {
		a.tail = a.tail[:copy(a.tail, a.tail[over:])]
	}
	a.tail = append(a.tail, p...)
}

// Encrypted reports whether what was written is a ZIP archive with an
// encrypted entry. Call it after the last Write.
func (a *ArchiveProbe) Encrypted() bool {
	if a.encrypted {
		return true
	}
	if a.notZip || a.tail == nil {
		return false
	}
	// The end-of-central-directory record, searched from the end (it may
	// carry a comment), and the central directory before it.
	t := a.tail
	for i := len(t) - endLen; i >= 0; i-- {
		if string(t[i:i+4]) != endSig {
			continue
		}
		le := binary.LittleEndian
		if int(le.Uint16(t[i+20:]))+i+endLen != len(t) {
			continue // not the record: its comment would not end the file
		}
		size := int(le.Uint32(t[i+12:]))
		cd := i - size
		if size == 0xffffffff || cd < 0 {
			return false // zip64, or a directory larger than the tail
		}
		dir := t[cd:i]
		for len(dir) >= centralLen && bytes.HasPrefix(dir, []byte(centralSig)) {
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
	return false
}
