package metrics

import (
	"net"
	"sync"
)

// Listener wraps l so that attachgate_smtp_sessions counts the
// connections it accepted that are still open.
func (m *Metrics) Listener(l net.Listener) net.Listener {
	if m == nil {
		return l
	}
	return &countingListener{Listener: l, m: m}
}

type countingListener struct {
	net.Listener
	m *Metrics
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.m.SessionOpened()
	return &countedConn{Conn: c, m: l.m}, nil
}

type countedConn struct {
	net.Conn
	m    *Metrics
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(c.m.SessionClosed)
	return c.Conn.Close()
}
