package mailpart

import (
	"fmt"
	"io"
)

// WalkTee is Walk that also copies the message, as it reads it, to w: the
// raw bytes, less the raw bodies of the attachments for which elide (asked
// before fn gets the body) returns true. What w receives is the message
// with those attachments' bodies cut out and everything else intact
// (headers, boundaries, every other part byte for byte): Rewrite of that
// copy gives the same output as Rewrite of the whole message when the cut
// parts are removed. So the pipeline reads attachment bytes once, from
// the wire, and spools only what stays in the message.
//
// The cut bytes go to side (when not nil), and the returned cuts say where
// they belong: Spliced puts them back. A message may turn out to need
// relaying untouched (Summary.PassThrough) only after an attachment was
// cut; side keeps that case exact. r is read to its end when WalkTee
// returns nil.
func WalkTee(r io.Reader, lim Limits, w, side io.Writer, elide func(p *Part) bool, fn func(p *Part, body io.Reader) error) (Summary, []Cut, error) {
	t := &tee{r: r, w: w, side: side, dropFrom: -1, pend: make([]byte, 0, 2*ioBufferSize)}
	wv := &walkVisitor{fn: fn, elide: elide}
	wk := newWalker(t, lim, wv, false)
	t.sc = wk.sc
	wk.sc.tee = t
	wv.w = wk
	if err := wk.run(); err != nil {
		return wv.finish(), t.cuts, err
	}
	// Whatever follows the last part (an epilogue the walk did not need).
	if _, err := io.Copy(io.Discard, wk.sc.br); err != nil {
		return wv.finish(), t.cuts, fmt.Errorf("read message: %w", err)
	}
	if err := t.settle(t.off); err != nil {
		return wv.finish(), t.cuts, err
	}
	return wv.finish(), t.cuts, nil
}

// Cut is a body WalkTee left out of its copy: Len bytes of side belong at
// offset At of the copy.
type Cut struct {
	At, Len int64
}

// Spliced reads the whole message back from WalkTee's copy and side.
func Spliced(copy, side io.Reader, cuts []Cut) io.Reader {
	var parts []io.Reader
	var pos int64
	for _, c := range cuts {
		parts = append(parts, io.LimitReader(copy, c.At-pos), io.LimitReader(side, c.Len))
		pos = c.At
	}
	return io.MultiReader(append(parts, copy)...)
}

// pos is the offset in the input of the next byte the scanner will parse.
func (s *scanner) pos() int64 { return s.tee.off - int64(s.br.Buffered()) }

// tee sits between the input and the scanner's buffer. Bytes the buffer
// read ahead are pending until the scanner parsed past them; then they are
// written or, inside an elided body, dropped.
type tee struct {
	r    io.Reader
	w    io.Writer
	side io.Writer // where cut bytes go; nil: dropped
	sc   *scanner

	written int64 // bytes written to w
	cuts    []Cut

	off      int64  // bytes read from r
	base     int64  // input offset of pend[0]
	pend     []byte // input bytes [base, off) not yet written or dropped
	dropFrom int64  // start of the body being elided; -1 when none
	err      error  // first write error
}

func (t *tee) Read(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	// The buffer refills only with what it holds parsed: settle that.
	if err := t.settle(t.sc.pos()); err != nil {
		return 0, err
	}
	n, err := t.r.Read(p)
	t.pend = append(t.pend, p[:n]...)
	t.off += int64(n)
	return n, err
}

// settle writes (or, from dropFrom on, drops) the pending bytes up to
// input offset upto.
func (t *tee) settle(upto int64) error {
	if t.err != nil {
		return t.err
	}
	n := int(upto - t.base)
	if n <= 0 {
		return nil
	}
	keep := n
	if t.dropFrom >= 0 {
		keep = int(max(0, min(int64(n), t.dropFrom-t.base)))
	}
	if keep > 0 {
		if _, err := t.w.Write(t.pend[:keep]); err != nil {
			t.err = fmt.Errorf("copy message: %w", err)
			return t.err
		}
		t.written += int64(keep)
	}
	if cut := t.pend[keep:n]; len(cut) > 0 && t.side != nil {
		if _, err := t.side.Write(cut); err != nil {
			t.err = fmt.Errorf("copy message: %w", err)
			return t.err
		}
		t.cuts[len(t.cuts)-1].Len += int64(len(cut))
	}
	rest := copy(t.pend, t.pend[n:])
	t.pend = t.pend[:rest]
	t.base = upto
	return nil
}

// startElision: the body of the part starts at input offset at.
func (t *tee) startElision(at int64) error {
	if err := t.settle(at); err != nil {
		return err
	}
	t.dropFrom = at
	t.cuts = append(t.cuts, Cut{At: t.written})
	return nil
}

// endElision: the body ended at input offset end (before the line ending
// that belongs to the next boundary).
func (t *tee) endElision(end int64) error {
	err := t.settle(max(end, t.dropFrom))
	t.dropFrom = -1
	return err
}
