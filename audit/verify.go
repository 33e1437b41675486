package audit

import (
	"context"
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
	if row.Type == TypeAuditPurged {
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
