package mailpart

import (
	"bytes"
	"io"
	"net/url"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// describePart fills the header-derived fields of a Part. Classification
// (Attachment, fallback Filename) is left to a classifier, because it
// depends on where the part sits and on what came before it.
func describePart(h textproto.Header) Part {
	p := Part{Header: h}
	mediaType, typeParams := parseParamHeader(h.Get("Content-Type"))
	if !validMediaType(mediaType) {
		mediaType = "text/plain"
	}
	p.MediaType, p.Params = mediaType, typeParams

	disp, dispParams := parseParamHeader(h.Get("Content-Disposition"))
	switch disp {
	case "", "inline", "attachment":
		p.Disposition = disp
	default:
		// RFC 2183 2.8: unrecognised disposition types are attachments.
		p.Disposition = "attachment"
	}
	p.Filename = partFilename(dispParams, typeParams)
	p.ContentID = cleanContentID(h.Get("Content-Id"))
	return p
}

// validMediaType accepts "type/subtype" made of RFC 2045 token characters.
func validMediaType(t string) bool {
	major, minor, ok := strings.Cut(t, "/")
	return ok && isToken(major) && isToken(minor)
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

func cleanContentID(v string) string {
	v = strings.TrimSpace(stripComment(v))
	v = strings.TrimPrefix(v, "<")
	v = strings.TrimSuffix(v, ">")
	return strings.TrimSpace(v)
}

// position is where a leaf sits in the multipart tree.
type position struct {
	parentType string // media type of the enclosing multipart, "" at top level
	inRelated  bool   // some enclosing multipart is multipart/related
}

// classification is the verdict for one leaf.
type classification struct {
	attachment bool // take out and link
	body       bool // a body text part: gets the notice
}

// classifyLeaf applies the attachment rules to one leaf. bodySeen tells
// whether an earlier leaf was a body text; referenced whether an HTML body
// seen earlier points at this part's Content-ID. go-message's reader calls
// any text part without "attachment" disposition inline, even with a file
// name, so the rules here work from the headers alone.
func classifyLeaf(p *Part, pos position, bodySeen, referenced bool) classification {
	mt := p.MediaType
	hasName := p.Filename != ""
	inlineResource := p.ContentID != "" && (pos.inRelated || referenced)
	inAlternative := pos.parentType == "multipart/alternative"
	switch {
	case pos.parentType == "multipart/signed" && isSignatureType(mt):
		// The signature is structure, not a file: linking it away would
		// turn every signed mail into one with an attachment link.
		return classification{}
	case p.Disposition == "attachment":
		return classification{attachment: true}
	case mt == "message/rfc822" || mt == "message/global":
		// Forwarded mail is a leaf: never descended, always linked.
		return classification{attachment: true}
	case mt == "text/plain" || mt == "text/html":
		// The first text leaf is the body even when a client named it;
		// later named text parts are files (Apple Mail sends .txt inline).
		if inAlternative || !hasName || !bodySeen {
			return classification{body: true}
		}
		return classification{attachment: true}
	case strings.HasPrefix(mt, "text/"), strings.HasPrefix(mt, "message/"), strings.HasPrefix(mt, "multipart/"):
		// text/calendar in an invitation's alternative, delivery status,
		// a multipart without boundary: readable content, not a file,
		// unless it carries a name.
		if inAlternative || !hasName || inlineResource {
			return classification{}
		}
		return classification{attachment: true}
	default:
		switch {
		case inlineResource:
			return classification{}
		case hasName:
			return classification{attachment: true}
		case p.Disposition == "inline":
			return classification{}
		}
		return classification{attachment: true}
	}
}

func isSignatureType(mt string) bool {
	switch mt {
	case "application/pgp-signature", "application/pkcs7-signature", "application/x-pkcs7-signature":
		return true
	}
	return false
}

// classifier carries what classification needs from earlier parts.
type classifier struct {
	bodySeen    bool
	attachments int
	cids        map[string]bool // Content-IDs referenced by HTML bodies so far, lowercased
}

// classify decides p.Attachment and gives attachments a name.
func (c *classifier) classify(p *Part, pos position) classification {
	v := classifyLeaf(p, pos, c.bodySeen, c.referenced(p.ContentID))
	if v.body {
		c.bodySeen = true
	}
	p.Attachment = v.attachment
	if v.attachment {
		c.attachments++
		if p.Filename == "" {
			if strings.HasPrefix(p.MediaType, "message/") {
				p.Filename = "message.eml" // Walk puts the subject in when it can
			} else {
				p.Filename = fallbackFilename(c.attachments, p.MediaType)
			}
		}
	}
	return v
}

func (c *classifier) referenced(cid string) bool {
	return cid != "" && c.cids[strings.ToLower(cid)]
}

func (c *classifier) addCID(ref string) {
	if c.cids == nil {
		c.cids = make(map[string]bool)
	}
	c.cids[strings.ToLower(ref)] = true
	if u, err := url.PathUnescape(ref); err == nil {
		c.cids[strings.ToLower(u)] = true
	}
}

// maxCIDLength bounds a reference kept across reads; longer ones are junk.
const maxCIDLength = 512

// cidScanner passes an HTML body through and records every "cid:" reference
// in it, including references split across reads.
type cidScanner struct {
	r     io.Reader
	c     *classifier
	carry []byte // an unfinished "cid:..." or the last few bytes
}

func (s *cidScanner) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.scan(p[:n], err != nil)
	return n, err
}

func (s *cidScanner) scan(chunk []byte, final bool) {
	data := append(s.carry, chunk...)
	s.carry = nil
	const marker = "cid:"
	for {
		i := indexFold(data, marker)
		if i < 0 {
			if !final {
				keep := min(len(data), len(marker)-1)
				s.carry = append([]byte(nil), data[len(data)-keep:]...)
			}
			return
		}
		ref := data[i+len(marker):]
		end := bytes.IndexAny(ref, "\"'<>() \t\r\n;,")
		if end < 0 && !final {
			if len(ref) <= maxCIDLength {
				s.carry = append([]byte(nil), data[i:]...)
			}
			return
		}
		if end < 0 {
			end = len(ref)
		}
		if end > 0 && end <= maxCIDLength {
			s.c.addCID(string(ref[:end]))
		}
		data = ref[end:]
	}
}

// indexFold is bytes.Index with ASCII case folding for a lowercase needle.
func indexFold(s []byte, lowerNeedle string) int {
	first := lowerNeedle[0]
	for i := 0; i+len(lowerNeedle) <= len(s); i++ {
		if s[i]|0x20 != first {
			continue
		}
		if bytes.EqualFold(s[i:i+len(lowerNeedle)], []byte(lowerNeedle)) {
			return i
		}
	}
	return -1
}
