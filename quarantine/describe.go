package quarantine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/emersion/go-message"
)

// Part is one leaf MIME part of a held message, as Describe lists it.
type Part struct {
	Path        string // position in the tree: "1", "2.1", ...
	ContentType string // media type, lower case
	Name        string // file name (Content-Disposition filename or Content-Type name), decoded
	Disposition string // attachment, inline or ""
	// Size is the decoded body's size in bytes; -1 when the body could not
	// be decoded (Err says why).
	Size int64
	Err  string
}

// Description is what an admin sees of a held message without its bodies:
// the item (envelope, rule, state), its header fields in order and its
// leaf MIME parts.
type Description struct {
	Item   Item
	Header []HeaderField
	Parts  []Part
}

// HeaderField is one header field as written (not decoded).
type HeaderField struct{ Key, Value string }

// maxParts bounds the parts Describe lists; the pipeline's MIME limits
// bound held messages well below it.
const maxParts = 10000

// Describe reads the held message id once, streaming: its header fields
// and, for each leaf part, type, name and decoded size.
func (m *Manager) Describe(ctx context.Context, id string) (Description, error) {
	it, rd, err := m.Original(ctx, id)
	if err != nil {
		return Description{}, err
	}
	defer rd.Close()
	d := Description{Item: it}
	ent, err := message.Read(rd)
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return Description{}, fmt.Errorf("quarantine: read held message %s: %w", id, err)
	}
	fields := ent.Header.Fields()
	for fields.Next() {
		raw, err := fields.Raw()
		if err != nil {
			continue
		}
		_, v, _ := strings.Cut(string(raw), ":")
		d.Header = append(d.Header, HeaderField{Key: fields.Key(), Value: strings.TrimSpace(unfold(v))})
	}
	slices.Reverse(d.Header) // go-message keeps fields last first
	err = ent.Walk(func(path []int, p *message.Entity, err error) error {
		if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
			return err
		}
		if p.MultipartReader() != nil {
			return nil
		}
		if len(d.Parts) >= maxParts {
			return errors.New("too many parts")
		}
		part := Part{Path: partPath(path)}
		part.ContentType, _, _ = p.Header.ContentType()
		if part.ContentType == "" {
			part.ContentType = "text/plain"
		}
		disp, dparams, _ := p.Header.ContentDisposition()
		part.Disposition = disp
		part.Name = decodeHeader(dparams["filename"])
		if part.Name == "" {
			_, cparams, _ := p.Header.ContentType()
			part.Name = decodeHeader(cparams["name"])
		}
		n, cerr := io.Copy(io.Discard, p.Body)
		part.Size = n
		if cerr != nil {
			part.Size, part.Err = -1, cerr.Error()
		}
		d.Parts = append(d.Parts, part)
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("quarantine: parts of %s: %w", id, err)
	}
	return d, nil
}

func partPath(path []int) string {
	if len(path) == 0 {
		return "1"
	}
	s := make([]string, len(path))
	for i, n := range path {
		s[i] = strconv.Itoa(n + 1)
	}
	return strings.Join(s, ".")
}

// unfold joins a folded header value into one line.
func unfold(v string) string {
	v = strings.ReplaceAll(v, "\r\n", "")
	return strings.ReplaceAll(v, "\n", "")
}
