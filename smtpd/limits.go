package smtpd

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// connLimiter counts the sessions of all our listeners and turns away
// connections beyond the total and per-client-address limits with a 421,
// before go-smtp sees them, so a flood from one address cannot starve
// everyone else.
type connLimiter struct {
	total, perClient int

	mu     sync.Mutex
	open   int
	byAddr map[netip.Addr]int
}

func newConnLimiter(total, perClient int) *connLimiter {
	return &connLimiter{total: total, perClient: perClient, byAddr: map[netip.Addr]int{}}
}

// limitedListener is one listener counted by a shared connLimiter.
type limitedListener struct {
	net.Listener
	l *connLimiter
}

func (l *connLimiter) wrap(ln net.Listener) net.Listener { return &limitedListener{Listener: ln, l: l} }

const replyTooManyConns = "421 4.7.0 Too many connections, try again later\r\n"

func (ll *limitedListener) Accept() (net.Conn, error) {
	l := ll.l
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := addrOf(c.RemoteAddr())
		l.mu.Lock()
		ok := (l.total <= 0 || l.open < l.total) && (l.perClient <= 0 || l.byAddr[addr] < l.perClient)
		if ok {
			l.open++
			l.byAddr[addr]++
		}
		l.mu.Unlock()
		if !ok {
			go refuse(c)
			continue
		}
		return &countedConn{Conn: c, release: func() { l.release(addr) }}, nil
	}
}

func refuse(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(replyTooManyConns))
	c.Close()
}

func (l *connLimiter) release(addr netip.Addr) {
	l.mu.Lock()
	l.open--
	if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
		delete(l.byAddr, addr)
	}
	l.mu.Unlock()
}

type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// failureLimiter counts failed AUTH attempts per client address in a
// sliding window.
type failureLimiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu       sync.Mutex
	failures map[netip.Addr][]time.Time
}

func newFailureLimiter(max int, window time.Duration) *failureLimiter {
	return &failureLimiter{max: max, window: window, now: time.Now, failures: map[netip.Addr][]time.Time{}}
}

// blocked tells whether addr has used up its attempts.
func (f *failureLimiter) blocked(addr netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.recent(addr)) >= f.max
}

func (f *failureLimiter) fail(addr netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures[addr] = append(f.recent(addr), f.now())
}

// recent drops expired failures; callers hold mu.
func (f *failureLimiter) recent(addr netip.Addr) []time.Time {
	cut := f.now().Add(-f.window)
	ts := f.failures[addr]
	i := 0
	for i < len(ts) && ts[i].Before(cut) {
		i++
	}
	ts = ts[i:]
	if len(ts) == 0 {
		delete(f.failures, addr)
		return nil
	}
	f.failures[addr] = ts
	return ts
}
