package mailpart

import (
	"strings"
	"testing"
)

func TestClassifyLeaf(t *testing.T) {
	related := position{parentType: "multipart/related", inRelated: true}
	alternative := position{parentType: "multipart/alternative"}
	mixed := position{parentType: "multipart/mixed"}
	top := position{}

	tests := []struct {
		name       string
		header     string
		pos        position
		bodySeen   bool
		referenced bool
		attachment bool
		body       bool
		filename   string // expected after classification; "" = any
	}{
		{name: "plain body", header: "Content-Type: text/plain; charset=utf-8", pos: top, body: true},
		{name: "missing content type is a plain body", header: "Subject: x", pos: top, body: true},
		{name: "invalid content type is a plain body", header: "Content-Type: text", pos: mixed, body: true},
		{name: "html body in alternative", header: "Content-Type: text/html; charset=utf-8", pos: alternative, bodySeen: true, body: true},
		{name: "disposition attachment wins", header: "Content-Type: text/plain\nContent-Disposition: attachment", pos: mixed, bodySeen: true, attachment: true, filename: "attachment-1.txt"},
		{name: "attachment disposition even for first text", header: "Content-Type: text/plain\nContent-Disposition: attachment; filename=notes.txt", pos: mixed, attachment: true, filename: "notes.txt"},
		{name: "unknown disposition counts as attachment", header: "Content-Type: text/html\nContent-Disposition: attachement", pos: mixed, attachment: true},
		// The go-message trap: a named text part without attachment
		// disposition is reported inline; after the body it is a file.
		{name: "named text after body is a file", header: "Content-Type: text/plain; name=log.txt\nContent-Disposition: inline; filename=log.txt", pos: mixed, bodySeen: true, attachment: true, filename: "log.txt"},
		{name: "named first text leaf is the body", header: "Content-Type: text/plain; name=body.txt", pos: top, body: true},
		{name: "named text in alternative stays body", header: "Content-Type: text/plain; name=body.txt", pos: alternative, bodySeen: true, body: true},
		{name: "second unnamed text is body too", header: "Content-Type: text/plain", pos: mixed, bodySeen: true, body: true},
		{name: "calendar in alternative kept", header: "Content-Type: text/calendar; method=REQUEST; name=invite.ics", pos: alternative, bodySeen: true},
		{name: "named csv is a file", header: "Content-Type: text/csv; name=data.csv", pos: mixed, bodySeen: true, attachment: true, filename: "data.csv"},
		{name: "unnamed enriched text kept", header: "Content-Type: text/enriched", pos: alternative, bodySeen: true},
		{name: "delivery status kept", header: "Content-Type: message/delivery-status", pos: position{parentType: "multipart/report"}, bodySeen: true},
		{name: "forwarded message", header: "Content-Type: message/rfc822", pos: mixed, bodySeen: true, attachment: true, filename: "message.eml"},
		{name: "forwarded message inline", header: "Content-Type: message/rfc822\nContent-Disposition: inline", pos: mixed, bodySeen: true, attachment: true},
		{name: "pdf with name", header: "Content-Type: application/pdf; name=a.pdf", pos: mixed, bodySeen: true, attachment: true, filename: "a.pdf"},
		{name: "pdf without name or disposition", header: "Content-Type: application/pdf", pos: mixed, bodySeen: true, attachment: true, filename: "attachment-1.pdf"},
		{name: "octet-stream without anything", header: "Content-Type: application/octet-stream", pos: top, attachment: true, filename: "attachment-1.bin"},
		{name: "inline image without name kept", header: "Content-Type: image/png\nContent-Disposition: inline", pos: mixed, bodySeen: true},
		{name: "inline image with name is a file", header: "Content-Type: image/png\nContent-Disposition: inline; filename=photo.png", pos: mixed, bodySeen: true, attachment: true, filename: "photo.png"},
		{name: "cid image in related kept", header: "Content-Type: image/png; name=logo.png\nContent-ID: <logo@x>", pos: related, bodySeen: true},
		{name: "cid image deep in related kept", header: "Content-Type: image/gif; name=a.gif\nContent-ID: <a@x>", pos: position{parentType: "multipart/mixed", inRelated: true}, bodySeen: true},
		{name: "cid image referenced by earlier html kept", header: "Content-Type: image/jpeg; name=p.jpg\nContent-ID: <p@x>", pos: mixed, bodySeen: true, referenced: true},
		{name: "cid image neither related nor referenced", header: "Content-Type: image/jpeg; name=p.jpg\nContent-ID: <p@x>", pos: mixed, bodySeen: true, attachment: true, filename: "p.jpg"},
		{name: "name without cid in related is a file", header: "Content-Type: application/pdf; name=x.pdf", pos: related, bodySeen: true, attachment: true},
		{name: "signature of multipart/signed kept", header: "Content-Type: application/pkcs7-signature; name=smime.p7s\nContent-Disposition: attachment; filename=smime.p7s", pos: position{parentType: "multipart/signed"}, bodySeen: true},
		{name: "pgp signature kept", header: "Content-Type: application/pgp-signature; name=signature.asc", pos: position{parentType: "multipart/signed"}, bodySeen: true},
		{name: "signature outside multipart/signed is a file", header: "Content-Type: application/pgp-signature; name=signature.asc", pos: mixed, bodySeen: true, attachment: true},
		{name: "attachment disposition beats cid", header: "Content-Type: image/png; name=a.png\nContent-ID: <a@x>\nContent-Disposition: attachment", pos: related, bodySeen: true, attachment: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := describePart(mustHeader(t, tc.header))
			var c classifier
			c.bodySeen = tc.bodySeen
			if tc.referenced {
				c.addCID(p.ContentID)
			}
			v := c.classify(&p, tc.pos)
			if v.attachment != tc.attachment || v.body != tc.body {
				t.Errorf("attachment=%v body=%v, want attachment=%v body=%v", v.attachment, v.body, tc.attachment, tc.body)
			}
			if p.Attachment != tc.attachment {
				t.Errorf("Part.Attachment = %v", p.Attachment)
			}
			if tc.attachment && p.Filename == "" {
				t.Error("attachment without file name")
			}
			if tc.filename != "" && p.Filename != tc.filename {
				t.Errorf("Filename = %q, want %q", p.Filename, tc.filename)
			}
		})
	}
}

func TestDescribePart(t *testing.T) {
	p := describePart(mustHeader(t, "Content-Type: Text/HTML; Charset=\"ISO-2022-JP\"; format=flowed\n"+
		"Content-Disposition: INLINE\nContent-ID:  <img.1@example.com> "))
	if p.MediaType != "text/html" || p.Params["charset"] != "ISO-2022-JP" || p.Params["format"] != "flowed" {
		t.Errorf("media type %q params %v", p.MediaType, p.Params)
	}
	if p.Disposition != "inline" {
		t.Errorf("Disposition = %q", p.Disposition)
	}
	if p.ContentID != "img.1@example.com" {
		t.Errorf("ContentID = %q", p.ContentID)
	}
}

func TestCIDScannerAcrossReads(t *testing.T) {
	html := `<img src="cid:part1.abc@example.com"><img src='CID:second%40x'>` + strings.Repeat(" ", 10) + `<img src="cid:last@x">`
	var c classifier
	s := &cidScanner{r: &oneByteReader{strings.NewReader(html)}, c: &c}
	buf := make([]byte, 3)
	for {
		if _, err := s.Read(buf); err != nil {
			break
		}
	}
	for _, id := range []string{"part1.abc@example.com", "second@x", "last@x"} {
		if !c.referenced(id) {
			t.Errorf("cid %q not recorded; have %v", id, c.cids)
		}
	}
}

type oneByteReader struct{ r *strings.Reader }

func (o *oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

// A cid reference in an HTML body keeps a named image outside
// multipart/related; without the reference it is linked.
func TestWalkCIDReferencedOutsideRelated(t *testing.T) {
	msg := crlfText(`MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<p><img src=3D"ci=
d:chart@example.com"></p>
--b
Content-Type: image/png; name=chart.png
Content-ID: <chart@example.com>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--b
Content-Type: image/png; name=other.png
Content-ID: <other@example.com>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--b--
`)
	parts, sum := walkAll(t, msg, Limits{})
	if partByPath(t, parts, "1.2").Attachment {
		t.Error("referenced cid image classified as attachment")
	}
	if !partByPath(t, parts, "1.3").Attachment {
		t.Error("unreferenced named image not classified as attachment")
	}
	if sum.Attachments != 1 {
		t.Errorf("Summary.Attachments = %d", sum.Attachments)
	}
}
