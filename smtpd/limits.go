package smtpd

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/attachgate/attachgate/clientip"
)

// connLimiter counts the sessions of all our listeners and turns away
// connections beyond the total and per-client-address limits with a 421,
// before go-smtp sees them, so a flood from one address cannot starve
// everyone else. Of the total, reserved slots are kept for privileged
// clients (in a trusted network, or authenticated): other clients share
// total-reserved, and a client that authenticates leaves their share.
type connLimiter struct {
	total, perClient, reserved int
	// privileged tells whether a client address is in a trusted network.
	privileged func(netip.Addr) bool
	// idle is the read timeout of unprivileged connections (0: no cap).
	idle time.Duration

	mu            sync.Mutex
	open          int
	openUntrusted int
	// byClient counts connections per client network
	// (clientip.ClientPrefix: an IPv4 address, an IPv6 /64), so a client
	// cannot get round the per-client limit by rotating through the
	// addresses of its own IPv6 prefix.
	byClient map[netip.Prefix]int
}

func newConnLimiter(total, perClient, reserved int, privileged func(netip.Addr) bool, idle time.Duration) *connLimiter {
	return &connLimiter{total: total, perClient: perClient, reserved: reserved, privileged: privileged,
		idle: idle, byClient: map[netip.Prefix]int{}}
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
		client := clientip.ClientPrefix(addr)
		privileged := l.privileged != nil && l.privileged(addr)
		l.mu.Lock()
		ok := (l.total <= 0 || l.open < l.total) && (l.perClient <= 0 || l.byClient[client] < l.perClient) &&
			(privileged || l.total <= 0 || l.openUntrusted < l.total-l.reserved)
		if ok {
			l.open++
			l.byClient[client]++
			if !privileged {
				l.openUntrusted++
			}
		}
		l.mu.Unlock()
		if !ok {
			go refuse(c)
			continue
		}
		return &countedConn{Conn: c, l: l, addr: addr, client: client, untrusted: !privileged}, nil
	}
}

func refuse(c net.Conn) {
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte(replyTooManyConns))
	c.Close()
}

// countedConn holds one slot of its connLimiter until closed.
type countedConn struct {
	net.Conn
	l      *connLimiter
	addr   netip.Addr
	client netip.Prefix
	once   sync.Once

	// untrusted: counted in the unprivileged share (guarded by l.mu).
	untrusted bool
}

// promote moves an authenticated client out of the unprivileged share,
// and out from under the shorter idle timeout.
func (c *countedConn) promote() {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if c.untrusted {
		c.untrusted = false
		c.l.openUntrusted--
	}
}

func (c *countedConn) isUntrusted() bool {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	return c.untrusted
}

// capDeadline bounds the read deadlines go-smtp sets (per command line)
// by the idle timeout of unprivileged clients.
func (c *countedConn) capDeadline(t time.Time) time.Time {
	if c.l.idle <= 0 || t.IsZero() || !c.isUntrusted() {
		return t
	}
	if limit := time.Now().Add(c.l.idle); t.After(limit) {
		return limit
	}
	return t
}

func (c *countedConn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.capDeadline(t))
}

func (c *countedConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.Conn.SetReadDeadline(c.capDeadline(t))
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func (c *countedConn) release() {
	l := c.l
	l.mu.Lock()
	l.open--
	if c.untrusted {
		c.untrusted = false
		l.openUntrusted--
	}
	if l.byClient[c.client]--; l.byClient[c.client] <= 0 {
		delete(l.byClient, c.client)
	}
	l.mu.Unlock()
}
