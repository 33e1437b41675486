package audit

import (
	"context"
	"crypto/hmac"
	"database/sql"
	"fmt"
	"io"
	"strconv"
)

// BreakKind says how the chain is broken at an event.
type BreakKind string

const (
	// BreakSeqGap: the event's seq is not the one after the previous event
	// (or after the purge anchor): events were deleted.
	BreakSeqGap BreakKind = "seq gap"
	// BreakPrevMismatch: the event's prev_hash is not the previous event's
	// hash (or the anchor's): an event before it was replaced, or the
	// anchor was rewritten.
	BreakPrevMismatch BreakKind = "prev mismatch"
	// BreakHashMismatch: the event's fields do not hash to its hash: the
	// event was edited.
	BreakHashMismatch BreakKind = "hash mismatch"
	// BreakAnchorMismatch: the purge anchor differs from what the newest
	// audit.purged event says was removed, or that event is missing.
	BreakAnchorMismatch BreakKind = "anchor mismatch"
	// BreakMACMismatch: the event's MAC is not the HMAC of its hash under
	// the audit key: it was edited and re-hashed by someone without the key.
	BreakMACMismatch BreakKind = "mac mismatch"
	// BreakMACMissing: the event has no MAC though an earlier one had.
	BreakMACMissing BreakKind = "mac missing"
	// BreakTruncated: the log ends before the head recorded outside the
	// database: the newest events (or all of them) were deleted, or the
	// database was replaced by an older one, or Redis came back empty.
	BreakTruncated BreakKind = "truncated"
	// BreakHeadMismatch: the event at the head's seq has another hash than
	// the head recorded outside the database.
	BreakHeadMismatch BreakKind = "head mismatch"
	// BreakHeadInvalid: the head file is missing (while the log has
	// events), unreadable or not signed by the audit key.
	BreakHeadInvalid BreakKind = "head invalid"
)

// Break is the first place the chain does not verify.
type Break struct {
	Seq  int64 // the event at which the chain breaks
	Kind BreakKind
	Want string // what the chain expected: seq, hash or anchor
	Got  string // what the event holds
}

func (b Break) String() string {
	switch b.Kind {
	case BreakSeqGap:
		return fmt.Sprintf("seq %d: %s: want seq %s, got %s (events missing before it)", b.Seq, b.Kind, b.Want, b.Got)
	case BreakAnchorMismatch:
		return fmt.Sprintf("seq %d: %s: anchor is %s, event states %s", b.Seq, b.Kind, b.Want, b.Got)
	case BreakTruncated:
		return fmt.Sprintf("seq %d: %s: %s lost; the head recorded outside the database is %s", b.Seq, b.Kind, b.Got, b.Want)
	case BreakHeadInvalid:
		return fmt.Sprintf("%s: %s", b.Kind, b.Got)
	default:
		return fmt.Sprintf("seq %d: %s: want %s, got %s", b.Seq, b.Kind, b.Want, b.Got)
	}
}

// VerifyResult sums up a verification.
type VerifyResult struct {
	Events   int64 // events checked (up to and including the break)
	FirstSeq int64 // 0 when the log is empty
	LastSeq  int64 // last event checked
	// Anchored is set once a retention purge removed events: the chain
	// then starts from AnchorSeq/AnchorHash, the last removed event.
	Anchored   bool
	AnchorSeq  int64
	AnchorHash string
	Break      *Break // nil when the chain verifies
	// Authenticated is set when the verifier had the audit key: every
	// event from the first one with a MAC on was checked against it, and
	// the log against the head recorded outside the database (HeadSeq).
	Authenticated bool
	MACs          int64 // events whose MAC verified
	HeadSeq       int64
	// LostFrom and LostTo are the sequence numbers missing at the end
	// when Break is a truncation.
	LostFrom, LostTo int64
}

// OK reports whether the whole chain verified.
func (r VerifyResult) OK() bool { return r.Break == nil }

func (r VerifyResult) String() string {
	if r.Break != nil {
		return "audit chain BROKEN at " + r.Break.String()
	}
	s := fmt.Sprintf("audit chain OK: %d events", r.Events)
	if r.Events > 0 {
		s += fmt.Sprintf(", seq %d..%d", r.FirstSeq, r.LastSeq)
	}
	if r.Anchored {
		s += fmt.Sprintf(", anchored at purged seq %d hash %s", r.AnchorSeq, r.AnchorHash)
	}
	if r.Authenticated {
		s += fmt.Sprintf(", %d MACs verified, head seq %d matches", r.MACs, r.HeadSeq)
	}
	return s
}

// Verify recomputes the hash chain in seq order, stops at the first broken
// event and writes a one-line report to w (nil for none). The error is for
// failures to read; a broken chain is reported in the result.
//
// Without a purge the chain starts at seq 1 with prev_hash "". A retention
// purge deletes a prefix of the chain and, in the same transaction, stores
// the seq and hash of the last deleted event as the anchor (table
// audit_anchor) and appends an audit.purged event stating them. The anchor
// is trusted as the start: the first remaining event must have seq
// anchor+1 and prev_hash equal to the anchor hash, and the newest
// audit.purged event must state the anchor, so rewriting the anchor alone
// shows.
//
// Verify reads in one transaction, so it sees a consistent snapshot while
// the daemon keeps recording.
func (l *SQLiteLog) Verify(ctx context.Context, w io.Writer) (VerifyResult, error) {
	res, err := l.verify(ctx)
	return reportVerify(res, err, w)
}

// verifyHead is what Verify compares the log with: the head file, read
// before the log (the head is written after each commit, so it never
// runs ahead of a snapshot taken after it).
type verifyHead struct {
	key  []byte // nil: no key, nothing authenticated
	head Head
	ok   bool  // a head file exists
	err  error // unreadable
}

func (s *settings) readVerifyHead() verifyHead {
	v := verifyHead{key: s.macKey}
	if s.head != nil {
		v.head, v.ok, v.err = ReadHead(s.head.path)
	}
	return v
}

// reportVerify wraps a backend's verification error, or writes the
// one-line report to w (nil for none).
func reportVerify(res VerifyResult, err error, w io.Writer) (VerifyResult, error) {
	if err != nil {
		return res, fmt.Errorf("audit: verify: %w", err)
	}
	if w != nil {
		if _, err := fmt.Fprintln(w, res.String()); err != nil {
			return res, fmt.Errorf("audit: verify: write report: %w", err)
		}
	}
	return res, nil
}

func (l *SQLiteLog) verify(ctx context.Context) (VerifyResult, error) {
	var res VerifyResult
	vh := l.readVerifyHead()
	// A read transaction (WAL snapshot) keeps a concurrent purge from
	// moving the anchor between reading it and reading the events.
	tx, err := l.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return res, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()

	a, err := readAnchor(ctx, tx)
	if err != nil {
		return res, err
	}
	check := newChainCheck(a)
	check.vh = vh
	rows, err := tx.QueryContext(ctx, "SELECT "+eventColumns+" FROM audit_events ORDER BY seq")
	if err != nil {
		return check.res, fmt.Errorf("query events: %w", err)
	}
	defer rows.Close()
	var row storedRow
	for rows.Next() {
		if err := rows.Scan(row.scanDest()...); err != nil {
			return check.res, fmt.Errorf("read event after seq %d: %w", check.res.LastSeq, err)
		}
		if ok, err := check.add(&row); err != nil || !ok {
			return check.res, err
		}
	}
	if err := rows.Err(); err != nil {
		return check.res, fmt.Errorf("read events after seq %d: %w", check.res.LastSeq, err)
	}
	return check.result(), nil
}

// chainCheck verifies a chain fed to it event by event in seq order,
// starting from the purge anchor (the zero anchor: seq 1, prev_hash "").
type chainCheck struct {
	res            VerifyResult
	anchor         anchor
	wantSeq        int64
	wantPrev       string
	recipients     []string
	sawPurge       bool
	lastPurgeSeq   int64
	lastPurgeState purgeStatement

	vh       verifyHead
	sawMAC   bool
	headHash string // hash of the event at vh.head.Seq, when read
	sawHead  bool
}

func newChainCheck(a anchor) *chainCheck {
	c := &chainCheck{anchor: a, wantSeq: a.seq + 1, wantPrev: a.hash}
	c.res.Anchored, c.res.AnchorSeq, c.res.AnchorHash = a.set, a.seq, a.hash
	return c
}

// add checks the next event. It returns false at the first break, which
// is then in res.Break; the error is for failures to compute a hash.
func (c *chainCheck) add(row *storedRow) (bool, error) {
	if c.res.Events == 0 {
		c.res.FirstSeq = row.Seq
	}
	c.res.Events++
	c.res.LastSeq = row.Seq
	brk, err := checkLink(row, c.wantSeq, c.wantPrev, &c.recipients)
	if err != nil || brk != nil {
		c.res.Break = brk
		return false, err
	}
	if c.vh.key != nil {
		switch {
		case row.MAC != "":
			if !hmac.Equal([]byte(row.MAC), []byte(eventMAC(c.vh.key, row.Hash))) {
				c.res.Break = &Break{Seq: row.Seq, Kind: BreakMACMismatch, Want: "HMAC of the hash under the audit key", Got: quoteHash(row.MAC)}
				return false, nil
			}
			c.sawMAC = true
			c.res.MACs++
		case c.sawMAC:
			c.res.Break = &Break{Seq: row.Seq, Kind: BreakMACMissing, Want: "a MAC (every event after the first MAC carries one)", Got: `""`}
			return false, nil
		}
		if c.vh.ok && row.Seq == c.vh.head.Seq {
			c.sawHead, c.headHash = true, row.Hash
		}
	}
	if EventType(row.Type) == TypeAuditPurged {
		c.sawPurge, c.lastPurgeSeq = true, row.Seq
		// Unparsable detail leaves a zero statement, which fails the anchor check below.
		c.lastPurgeState, _ = parsePurgeDetail(row.Detail)
	}
	c.wantSeq, c.wantPrev = row.Seq+1, row.Hash
	return true, nil
}

// result ends the check after the last event: with an anchor, the newest
// audit.purged event must state it.
func (c *chainCheck) result() VerifyResult {
	if c.res.Break == nil && c.vh.key != nil {
		c.checkHead()
	}
	a := c.anchor
	if !a.set || c.res.Break != nil {
		return c.res
	}
	stated := "no audit.purged event"
	if c.sawPurge {
		stated = c.lastPurgeState.String()
	}
	if !c.sawPurge || c.lastPurgeState.lastSeq != a.seq || c.lastPurgeState.lastHash != a.hash {
		at := c.lastPurgeSeq
		if !c.sawPurge {
			at = a.seq + 1 // where the purge event should have followed the anchor
		}
		c.res.Break = &Break{
			Seq:  at,
			Kind: BreakAnchorMismatch,
			Want: purgeStatement{lastSeq: a.seq, lastHash: a.hash}.String(),
			Got:  stated,
		}
	}
	return c.res
}

// checkHead compares the log, read to its end, with the head recorded
// outside the database.
func (c *chainCheck) checkHead() {
	vh := c.vh
	last := c.anchor.seq
	if c.res.Events > 0 {
		last = c.res.LastSeq
	}
	switch {
	case vh.err != nil:
		c.res.Break = &Break{Seq: last, Kind: BreakHeadInvalid, Got: vh.err.Error()}
		return
	case !vh.ok:
		if last == 0 {
			c.res.Authenticated = true // nothing recorded yet, nothing to anchor
			return
		}
		c.res.Break = &Break{Seq: last, Kind: BreakHeadInvalid,
			Got: "no head file outside the database, though the log holds events up to seq " + strconv.FormatInt(last, 10)}
		return
	case !vh.head.valid(vh.key):
		c.res.Break = &Break{Seq: vh.head.Seq, Kind: BreakHeadInvalid,
			Got: fmt.Sprintf("head seq %d is not signed by the audit key (forged, or another key ring)", vh.head.Seq)}
		return
	}
	h := vh.head
	c.res.HeadSeq = h.Seq
	want := fmt.Sprintf("seq %d hash %s", h.Seq, quoteHash(h.Hash))
	switch {
	case h.Seq > last:
		c.res.LostFrom, c.res.LostTo = last+1, h.Seq
		c.res.Break = &Break{Seq: last + 1, Kind: BreakTruncated, Want: want,
			Got: fmt.Sprintf("events seq %d..%d", last+1, h.Seq)}
		return
	case c.sawHead && c.headHash != h.Hash:
		c.res.Break = &Break{Seq: h.Seq, Kind: BreakHeadMismatch, Want: quoteHash(h.Hash), Got: quoteHash(c.headHash)}
		return
	case !c.sawHead && h.Seq == c.anchor.seq && c.anchor.set && c.anchor.hash != h.Hash:
		c.res.Break = &Break{Seq: h.Seq, Kind: BreakHeadMismatch, Want: quoteHash(h.Hash), Got: quoteHash(c.anchor.hash)}
		return
	}
	c.res.Authenticated = true
}

// checkLink checks one event against the chain so far.
func checkLink(row *storedRow, wantSeq int64, wantPrev string, recipients *[]string) (*Break, error) {
	if row.Seq != wantSeq {
		return &Break{Seq: row.Seq, Kind: BreakSeqGap, Want: strconv.FormatInt(wantSeq, 10), Got: strconv.FormatInt(row.Seq, 10)}, nil
	}
	if row.PrevHash != wantPrev {
		return &Break{Seq: row.Seq, Kind: BreakPrevMismatch, Want: quoteHash(wantPrev), Got: quoteHash(row.PrevHash)}, nil
	}
	var err error
	if *recipients, err = row.decodeRecipients(*recipients); err != nil {
		// An unreadable recipients column is tampering too.
		return &Break{Seq: row.Seq, Kind: BreakHashMismatch, Want: row.Hash, Got: "undecodable recipients: " + err.Error()}, nil
	}
	canon := row.canonical(*recipients)
	got, err := canonicalHash(&canon)
	if err != nil {
		return nil, err
	}
	if got != row.Hash {
		return &Break{Seq: row.Seq, Kind: BreakHashMismatch, Want: got, Got: row.Hash}, nil
	}
	return nil, nil
}

func quoteHash(h string) string {
	if h == "" {
		return `""`
	}
	return h
}
