package testsupport

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePortNeverRepeats: ports handed out in one test binary are all
// different and each could be bound when it was handed out, the property
// tests that start two daemons rely on.
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 300 {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("port %d handed out but not bindable: %v", port, err)
		}
		l.Close()
	}
}
