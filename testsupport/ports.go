package testsupport

import (
	"fmt"
	"net"
	"sync"
)

var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort returns a port on 127.0.0.1 that nothing listened on when it was
// asked for and that no earlier call in this test binary returned. A test
// that starts a daemon on such a port binds it later; without the second
// condition the kernel may hand the same port to the next caller in
// between, and two daemons of one test (or of two parallel tests) then
// fight over it ("address already in use").
func FreePort() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("find a free port: 100 tries gave only ports handed out before")
}
