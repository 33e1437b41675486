package clientip

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestAddr(t *testing.T) {
	res := Resolver{Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
		ok     bool
	}{
		{"direct client", "192.0.2.7:5555", nil, "192.0.2.7", true},
		{"spoofed XFF from an untrusted peer is ignored", "192.0.2.7:5555", []string{"10.9.9.9"}, "192.0.2.7", true},
		{"one trusted proxy", "10.0.0.2:80", []string{"198.51.100.4"}, "198.51.100.4", true},
		{"client-written hops left of the proxy's prove nothing", "10.0.0.2:80", []string{"1.2.3.4, 198.51.100.4"}, "198.51.100.4", true},
		{"chain of trusted proxies", "10.0.0.2:80", []string{"198.51.100.4, 10.0.0.3", "10.0.0.4"}, "198.51.100.4", true},
		{"garbage behind the proxy", "10.0.0.2:80", []string{"nonsense"}, "10.0.0.2", true},
		{"only trusted hops", "10.0.0.2:80", []string{"10.0.0.3"}, "10.0.0.3", true},
		{"IPv4-mapped IPv6 peer", "[::ffff:192.0.2.7]:1", nil, "192.0.2.7", true},
		{"IPv6 proxy", "[::1]:80", []string{"2001:db8::5"}, "2001:db8::5", true},
		{"unparsable peer", "pipe", nil, "invalid IP", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got, ok := res.Addr(r)
			if ok != tt.ok || got.String() != tt.want {
				t.Fatalf("Addr = %v %v, want %v %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
