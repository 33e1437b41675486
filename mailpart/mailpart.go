// Package mailpart owns the MIME side of attachgate: the streaming MIME walk,
// attachment classification, file-name decoding, the rewrite that takes
// attachments out of a message, and the link notice that replaces them.
//
// Everything works in one streaming pass over the message: bodies are never
// held whole in memory. Parsing is lenient the way mail clients are lenient
// (broken boundaries, odd encodings, raw 8-bit names), and bounded by Limits
// so that hostile structure fails with ErrTooComplex instead of eating memory.
package mailpart

import (
	"errors"

	"github.com/emersion/go-message/textproto"
)

// Limits bound the structure of a message. Zero values select the defaults.
type Limits struct {
	MaxDepth       int // nesting of multiparts; 0 means default 32
	MaxParts       int // total parts; 0 means default 2000
	MaxHeaderBytes int // per header block; 0 means default 1 MiB (go-message default)
}

const (
	defaultMaxDepth       = 32
	defaultMaxParts       = 2000
	defaultMaxHeaderBytes = 1 << 20

	// ioBufferSize sizes the read and write buffers. A line longer than this
	// is passed through in pieces; it can never be a boundary line.
	ioBufferSize = 64 << 10
)

func (l Limits) withDefaults() Limits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = defaultMaxDepth
	}
	if l.MaxParts <= 0 {
		l.MaxParts = defaultMaxParts
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = defaultMaxHeaderBytes
	}
	return l
}

// ErrTooComplex is returned (wrapped) when a limit is exceeded; smtpd maps it to 554 5.6.0.
var ErrTooComplex = errors.New("message structure too complex")

// Part describes one entity of the message as Walk saw it.
type Part struct {
	Path        string           // stable position: "1" is the top-level entity; children "1.1", "1.2", grandchildren "1.2.1"...
	Header      textproto.Header // the entity's own header fields
	MediaType   string           // lowercased; "text/plain" when missing/invalid
	Params      map[string]string
	Disposition string // lowercased "attachment", "inline" or ""
	Filename    string // decoded UTF-8 name; for attachments never empty (fallback "attachment-N.ext" from the media type)
	ContentID   string // without <>
	Attachment  bool   // true: this part is to be taken out and linked
	Depth       int

	// Container is the path of the TNEF part (winmail.dat) a file was
	// found in ("" for a MIME part); such a file's Path is Container +
	// ".tN". Rewrite removes the container when any file in it is removed.
	Container string
	// Provisional is true while Filename and MediaType may still change:
	// a file inside TNEF gets its final name only when its body has been
	// read to the end (tnef.go). Decide on such a part after reading it.
	Provisional bool
}

// Summary describes the whole message after Walk.
type Summary struct {
	Header      textproto.Header // top-level header
	MessageID   string           // Message-ID header value
	Parts       int              // leaf parts seen
	Attachments int

	// Why the message must pass through untouched (see PassThrough):
	// signed (multipart/signed, S/MIME signed-data, inline PGP signed),
	// encrypted (multipart/encrypted, S/MIME enveloped-data, inline PGP
	// message), a multipart/report, or Auto-Submitted other than "no"
	// (the keyword). Leaves inside such content are never attachments.
	Signed, Encrypted bool
	Report            bool
	AutoSubmitted     string
}
