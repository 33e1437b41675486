package smtpd

import (
	"bufio"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// scriptedListener hands out one in-process connection per remote address
// given, then blocks; the far ends are kept to read what the limiter says.
type scriptedListener struct {
	conns chan net.Conn
}

type remoteConn struct {
	net.Conn
	remote net.Addr
}

func (c remoteConn) RemoteAddr() net.Addr { return c.remote }

func (l *scriptedListener) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (l *scriptedListener) Close() error   { return nil }
func (l *scriptedListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestPerClientLimitCountsIPv6Prefixes: the per-client connection limit
// counts an IPv6 /64 as one client (a host rotating through the addresses
// of its own prefix is still one client) and an IPv4 address as one; other
// prefixes and addresses are not affected.
func TestPerClientLimitCountsIPv6Prefixes(t *testing.T) {
	tests := []struct {
		name    string
		remotes []string
		want    []bool // accepted?
	}{
		{"ipv6 same /64", []string{"[2001:db8:1:2::1]:1000", "[2001:db8:1:2::ffff]:1000", "[2001:db8:1:2:abcd::9]:1000"}, []bool{true, true, false}},
		{"ipv6 other /64", []string{"[2001:db8:1:2::1]:1000", "[2001:db8:1:2::2]:1000", "[2001:db8:1:3::1]:1000"}, []bool{true, true, true}},
		{"ipv4 addresses", []string{"192.0.2.1:1", "192.0.2.1:2", "192.0.2.2:1", "192.0.2.1:3"}, []bool{true, true, true, false}},
		{"ipv4-mapped counts as ipv4", []string{"[::ffff:192.0.2.9]:1", "192.0.2.9:2", "192.0.2.9:3"}, []bool{true, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newConnLimiter(100, 2, 0, nil, 0)
			src := &scriptedListener{conns: make(chan net.Conn, len(tt.remotes))}
			var far []net.Conn
			for _, r := range tt.remotes {
				a, b := net.Pipe()
				src.conns <- remoteConn{Conn: a, remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(r))}
				far = append(far, b)
			}
			close(src.conns)
			ln := l.wrap(src)
			var accepted []net.Conn
			for {
				c, err := ln.Accept()
				if err != nil {
					break
				}
				accepted = append(accepted, c)
			}
			// A refused connection hears 421 and is closed; an accepted one
			// hears nothing from the limiter.
			for i, b := range far {
				refused := false
				if !tt.want[i] {
					line, err := bufio.NewReader(b).ReadString('\n')
					refused = err == nil && strings.HasPrefix(line, "421 4.7.0")
				}
				if refused == tt.want[i] {
					t.Errorf("connection %d from %s: accepted %v, want %v", i, tt.remotes[i], !refused, tt.want[i])
				}
			}
			if n := countTrue(tt.want); len(accepted) != n {
				t.Errorf("%d accepted, want %d", len(accepted), n)
			}
			for _, c := range accepted {
				c.Close()
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.open != 0 || len(l.byClient) != 0 {
				t.Errorf("after closing: %d open, %d clients counted", l.open, len(l.byClient))
			}
		})
	}
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}
