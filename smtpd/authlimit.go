package smtpd

import (
	"container/list"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/attachgate/attachgate/audit"
)

// failureLimiter counts AUTH attempts in a sliding window, per client
// address and per target user name: a client address is locked out after
// max attempts, a user name after targetMax attempts from any addresses
// (guesses spread over many addresses, such as one IPv6 /64, still stop).
// An attempt counts from the moment it is made, before its password is
// hashed, so parallel guesses cannot all be checked against one stale
// count; a successful attempt is taken back. Failures that need no
// password check are counted the same way.
//
// A target lock is no way for a stranger to lock a user out for good: it
// lasts until the window has slid past the attempts that caused it
// (refused attempts are not counted), and it does not apply to an address
// from which that user authenticated within knownRetention.
//
// Every table is bounded by maxAddrs entries. A full table forgets its
// least recently counted entry, so no number of clients locks out anyone
// who did not fail.
//
// Refusals of a locked-out client (or user) are audited one by one up to
// refusalBurst per window; further ones are counted and written as one
// aggregated auth.failed event when that window ends.
type failureLimiter struct {
	max       int
	targetMax int
	window    time.Duration
	now       func() time.Time
	// record writes an aggregated event (set by the server).
	record func(audit.Event)
	// maxAddrs bounds each table, so memory stays bounded however many
	// clients guess at however many names.
	maxAddrs int

	mu          sync.Mutex
	failures    map[netip.Addr]*list.Element // per client address; values *attempts
	clientOrder *list.List                   // most recently counted first
	targets     map[string]*list.Element     // per user name
	targetOrder *list.List
	known       map[knownPair]time.Time // successful (address, user) pairs
	pending     map[*pendingRefusals]struct{}
	closed      bool
}

// attempts is one entry of a table.
type attempts struct {
	key any // netip.Addr or string
	ts  []time.Time
	// refusals while locked in the refusal window starting at refStart.
	refused  int
	refStart time.Time
	agg      *pendingRefusals
}

// pendingRefusals counts the refusals not audited one by one.
type pendingRefusals struct {
	event       audit.Event
	n           int
	first, last time.Time
	timer       *time.Timer
}

type knownPair struct {
	addr netip.Addr
	user string
}

// lockKind tells why an attempt was refused.
type lockKind int

const (
	notLocked lockKind = iota
	clientLocked
	targetLocked
)

const (
	defaultMaxTrackedAddrs = 100000
	// refusalBurst refusals per window and locked entry are audited alone.
	refusalBurst = 5
	// knownRetention: how long a successful (address, user) pair stays
	// exempt from the lockout per user.
	knownRetention = 30 * 24 * time.Hour
)

// targetFactor: a user name is locked after targetFactor times the
// per-client limit, so a user's own few devices do not lock the account.
const targetFactor = 2

func newFailureLimiter(max int, window time.Duration) *failureLimiter {
	return &failureLimiter{max: max, targetMax: targetFactor * max, window: window, now: time.Now,
		maxAddrs: defaultMaxTrackedAddrs,
		failures: map[netip.Addr]*list.Element{}, clientOrder: list.New(),
		targets: map[string]*list.Element{}, targetOrder: list.New(),
		known: map[knownPair]time.Time{}, pending: map[*pendingRefusals]struct{}{}}
}

// table is one bounded LRU table of a failureLimiter; callers hold mu.
type table[K comparable] struct {
	m     map[K]*list.Element
	order *list.List
}

func (f *failureLimiter) clients() table[netip.Addr] {
	return table[netip.Addr]{f.failures, f.clientOrder}
}

func (f *failureLimiter) users() table[string] { return table[string]{f.targets, f.targetOrder} }

// maxUserKey is the longest user name a users file holds
// (users.ValidateName); longer names, which can never authenticate, share
// one entry, so the table of user names stays small in bytes too.
const maxUserKey = 256

func targetKey(user string) string {
	if len(user) > maxUserKey {
		return ""
	}
	return user
}

// get returns key's entry with expired attempts dropped, nil if none.
func (t table[K]) get(key K, cut time.Time) *attempts {
	el, ok := t.m[key]
	if !ok {
		return nil
	}
	a := el.Value.(*attempts)
	i := 0
	for i < len(a.ts) && a.ts[i].Before(cut) {
		i++
	}
	a.ts = a.ts[i:]
	if len(a.ts) == 0 && a.refStart.Before(cut) {
		t.order.Remove(el)
		delete(t.m, key)
		return nil
	}
	return a
}

// count adds an attempt at time at to key's entry (up to limit attempts:
// the entry is locked then anyway), creating it and evicting the least
// recently counted entry when the table holds bound entries.
func (t table[K]) count(key K, at, cut time.Time, limit, bound int) *attempts {
	a := t.get(key, cut)
	if a == nil {
		for len(t.m) >= max(bound, 1) {
			back := t.order.Back()
			t.order.Remove(back)
			delete(t.m, back.Value.(*attempts).key.(K))
		}
		a = &attempts{key: key}
		t.m[key] = t.order.PushFront(a)
	} else {
		t.order.MoveToFront(t.m[key])
	}
	if len(a.ts) < limit {
		a.ts = append(a.ts, at)
	}
	return a
}

// takeBack removes the attempt made at time at from key's entry.
func (t table[K]) takeBack(key K, at time.Time) {
	el, ok := t.m[key]
	if !ok {
		return
	}
	a := el.Value.(*attempts)
	for i := len(a.ts) - 1; i >= 0; i-- {
		if a.ts[i].Equal(at) {
			a.ts = append(a.ts[:i:i], a.ts[i+1:]...)
			break
		}
	}
	if len(a.ts) == 0 && a.agg == nil && a.refused == 0 {
		t.order.Remove(el)
		delete(t.m, key)
	}
}

// blocked tells whether addr has used up its attempts.
func (f *failureLimiter) blocked(addr netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.clients().get(addr, f.now().Add(-f.window))
	return a != nil && len(a.ts) >= f.max
}

// lockOf tells whether an attempt of addr at user would be refused;
// callers hold mu.
func (f *failureLimiter) lockOf(addr netip.Addr, user string, now time.Time) lockKind {
	cut := now.Add(-f.window)
	if a := f.clients().get(addr, cut); a != nil && len(a.ts) >= f.max {
		return clientLocked
	}
	if a := f.users().get(targetKey(user), cut); a != nil && len(a.ts) >= f.targetMax {
		if at, ok := f.known[knownPair{addr, user}]; !ok || now.Sub(at) > knownRetention {
			return targetLocked
		}
	}
	return notLocked
}

// attempt counts one attempt of addr at user and returns a function to
// call when it succeeded (it takes the attempt back and exempts addr from
// user's target lock); when addr or user has used up its attempts,
// nothing is counted and lock says which.
func (f *failureLimiter) attempt(addr netip.Addr, user string) (succeeded func(), lock lockKind) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if lock := f.lockOf(addr, user, now); lock != notLocked {
		return nil, lock
	}
	f.countLocked(addr, user, now)
	return func() { f.succeeded(addr, user, now) }, notLocked
}

// countLocked counts an attempt in both tables; callers hold mu.
func (f *failureLimiter) countLocked(addr netip.Addr, user string, at time.Time) {
	cut := at.Add(-f.window)
	f.clients().count(addr, at, cut, f.max, f.maxAddrs)
	f.users().count(targetKey(user), at, cut, f.targetMax, f.maxAddrs)
}

func (f *failureLimiter) succeeded(addr netip.Addr, user string, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clients().takeBack(addr, at)
	f.users().takeBack(targetKey(user), at)
	p := knownPair{addr, user}
	if _, ok := f.known[p]; !ok && len(f.known) >= f.maxAddrs {
		now := f.now()
		for k, t := range f.known {
			if now.Sub(t) > knownRetention {
				delete(f.known, k)
			}
		}
		for k := range f.known { // still full: forget one at random
			if len(f.known) < f.maxAddrs {
				break
			}
			delete(f.known, k)
		}
	}
	f.known[p] = f.now()
}

// fail counts a failure that needed no password check, through the same
// bounded tables as attempt.
func (f *failureLimiter) fail(addr netip.Addr, user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.countLocked(addr, user, f.now())
}

// refused notes an AUTH refused because of lock and tells whether e is to
// be recorded now; otherwise it joins the aggregate of the locked client
// (or user), written when that window ends.
func (f *failureLimiter) refused(lock lockKind, addr netip.Addr, user string, e audit.Event) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return true
	}
	now := f.now()
	cut := now.Add(-f.window)
	var a *attempts
	if lock == targetLocked {
		a = f.users().get(targetKey(user), cut)
	} else {
		a = f.clients().get(addr, cut)
	}
	if a == nil {
		return true
	}
	if a.refStart.IsZero() || !a.refStart.After(cut) {
		a.refStart, a.refused = now, 0
	}
	if a.refused++; a.refused <= refusalBurst {
		return true
	}
	p := a.agg
	if p == nil {
		p = &pendingRefusals{event: e, first: now}
		if lock == targetLocked {
			p.event.ClientAddr = "" // refusals of many clients
		}
		a.agg = p
		f.pending[p] = struct{}{}
		// The aggregate ends with the refusal window.
		p.timer = time.AfterFunc(a.refStart.Add(f.window).Sub(now), func() { f.flush(a, p) })
	}
	p.n++
	p.last = now
	return false
}

// flush records one aggregate.
func (f *failureLimiter) flush(a *attempts, p *pendingRefusals) {
	f.mu.Lock()
	if a.agg == p {
		a.agg = nil
	}
	_, ok := f.pending[p]
	delete(f.pending, p)
	f.mu.Unlock()
	if ok && f.record != nil {
		f.record(aggregatedRefusals(p))
	}
}

// aggregatedRefusals is the auth.failed event standing for the refusals
// of p; the Detail's shape is documented in README (Security).
func aggregatedRefusals(p *pendingRefusals) audit.Event {
	e := p.event
	e.Time = time.Time{}
	who := e.ClientAddr
	if who == "" {
		who = "several clients for user " + e.AuthUser
	}
	e.Detail = fmt.Sprintf("aggregated: %d AUTH attempts refused (reason %s) from %s between %s and %s",
		p.n, e.Reason, who, p.first.UTC().Format(time.RFC3339), p.last.UTC().Format(time.RFC3339))
	return e
}

// close records every pending aggregate and stops their timers; later
// refusals are recorded one by one.
func (f *failureLimiter) close() {
	f.mu.Lock()
	f.closed = true
	pending := make([]*pendingRefusals, 0, len(f.pending))
	for p := range f.pending {
		p.timer.Stop()
		pending = append(pending, p)
	}
	f.pending = map[*pendingRefusals]struct{}{}
	f.mu.Unlock()
	for _, p := range pending {
		if f.record != nil {
			f.record(aggregatedRefusals(p))
		}
	}
}
