package clientip

import (
	"net/netip"
	"testing"
)

func TestClientPrefix(t *testing.T) {
	tests := []struct {
		name, addr, want string
	}{
		{"IPv4 is its own client", "192.0.2.7", "192.0.2.7/32"},
		{"IPv4-mapped IPv6 is the IPv4 client", "::ffff:192.0.2.7", "192.0.2.7/32"},
		{"IPv6 counts per /64", "2001:db8:66:66::1", "2001:db8:66:66::/64"},
		{"another address of the same /64", "2001:db8:66:66:ffff:ffff:ffff:ffff", "2001:db8:66:66::/64"},
		{"the neighbouring /64 is another client", "2001:db8:66:67::1", "2001:db8:66:67::/64"},
		{"zone dropped", "fe80::1%eth0", "fe80::/64"},
		{"loopback IPv6", "::1", "::/64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ClientPrefix(netip.MustParseAddr(tt.addr))
			if got.String() != tt.want {
				t.Fatalf("ClientPrefix(%s) = %s, want %s", tt.addr, got, tt.want)
			}
		})
	}
	if got := ClientPrefix(netip.Addr{}); got.IsValid() {
		t.Fatalf("ClientPrefix(invalid) = %s, want the zero Prefix", got)
	}
}
