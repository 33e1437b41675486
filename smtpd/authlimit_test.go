package smtpd

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/attachgate/attachgate/audit"
)

// fakeClock drives a failureLimiter through its window without waiting.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }
func addrN(i int) netip.Addr                 { return netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}) }
func newTestLimiter(c *fakeClock) *failureLimiter {
	f := newFailureLimiter(3, time.Minute)
	f.now = c.now
	return f
}

// TestFailureLimiterTargetLock: a user name is locked after targetMax
// attempts from any addresses, for no longer than the window after the
// last counted attempt, and never for an address from which that user
// authenticated.
func TestFailureLimiterTargetLock(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *failureLimiter, c *fakeClock)
		addr  netip.Addr
		want  lockKind
	}{
		{"fresh user", func(*failureLimiter, *fakeClock) {}, addrN(1), notLocked},
		{"guesses from many addresses lock the user", func(f *failureLimiter, c *fakeClock) {
			for i := range 6 {
				f.attempt(addrN(100+i), "alice")
			}
		}, addrN(1), targetLocked},
		{"cheap failures count too", func(f *failureLimiter, c *fakeClock) {
			for i := range 6 {
				f.fail(addrN(100+i), "alice")
			}
		}, addrN(1), targetLocked},
		{"refused attempts do not extend the lock", func(f *failureLimiter, c *fakeClock) {
			for i := range 6 {
				f.attempt(addrN(100+i), "alice")
			}
			for i := range 50 {
				c.advance(time.Second)
				if _, lock := f.attempt(addrN(200+i), "alice"); lock != targetLocked {
					t.Fatalf("attempt %d while locked: %v", i, lock)
				}
			}
			c.advance(11 * time.Second) // a minute after the last counted attempt
		}, addrN(1), notLocked},
		{"an address alice authenticated from is exempt", func(f *failureLimiter, c *fakeClock) {
			ok, _ := f.attempt(addrN(1), "alice")
			ok()
			for i := range 6 {
				f.attempt(addrN(100+i), "alice")
			}
		}, addrN(1), notLocked},
		{"other users are not locked", func(f *failureLimiter, c *fakeClock) {
			for i := range 6 {
				f.attempt(addrN(100+i), "bob")
			}
		}, addrN(1), notLocked},
		{"the client lock still applies to a known address", func(f *failureLimiter, c *fakeClock) {
			ok, _ := f.attempt(addrN(1), "alice")
			ok()
			for range 3 {
				f.attempt(addrN(1), "alice")
			}
		}, addrN(1), clientLocked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			f := newTestLimiter(c)
			tt.setup(f, c)
			_, got := f.attempt(tt.addr, "alice")
			if got != tt.want {
				t.Fatalf("attempt at alice from %v: lock %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

// TestFailureLimiterBounded: however many addresses and names fail, each
// table stays within maxAddrs, the least recently counted entry going.
func TestFailureLimiterBounded(t *testing.T) {
	c := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := newTestLimiter(c)
	f.maxAddrs = 10
	for i := range 100 {
		f.fail(addrN(i), "user"+strings.Repeat("x", i%30))
		f.attempt(addrN(1000+i), "name"+strings.Repeat("y", i))
	}
	if len(f.failures) > 10 || f.clientOrder.Len() != len(f.failures) ||
		len(f.targets) > 10 || f.targetOrder.Len() != len(f.targets) {
		t.Fatalf("tables hold %d clients (list %d) and %d users (list %d), bound 10",
			len(f.failures), f.clientOrder.Len(), len(f.targets), f.targetOrder.Len())
	}
	if _, lock := f.attempt(addrN(5000), "alice"); lock != notLocked {
		t.Fatalf("a new client is refused by a full table: %v", lock)
	}
}

// TestFailureLimiterAggregatesRefusals: a locked-out client's refusals
// are recorded alone up to refusalBurst per window; the rest becomes one
// event saying how many it stands for, written at the latest on close.
func TestFailureLimiterAggregatesRefusals(t *testing.T) {
	c := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := newTestLimiter(c)
	var mu sync.Mutex
	var recorded []audit.Event
	f.record = func(e audit.Event) { mu.Lock(); recorded = append(recorded, e); mu.Unlock() }
	a := addrN(1)
	for range 3 {
		f.attempt(a, "alice")
	}
	alone := 0
	for range 100 {
		if f.refused(clientLocked, a, "", audit.Event{Type: "auth.failed", ClientAddr: a.String(), Reason: "locked out"}) {
			alone++
		}
	}
	if alone != refusalBurst {
		t.Fatalf("%d refusals recorded alone, want %d", alone, refusalBurst)
	}
	f.close()
	mu.Lock()
	defer mu.Unlock()
	if len(recorded) != 1 || !strings.Contains(recorded[0].Detail, "aggregated: 95 AUTH attempts refused (reason locked out) from 10.0.0.1") {
		t.Fatalf("aggregate: %+v", recorded)
	}
}
