package linkserver

import (
	"crypto/tls"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/bytesize"
)

func TestClientAddr(t *testing.T) {
	s := &Server{}
	if err := s.SetTrustedProxies([]netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("fd00::/8"),
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"direct client", "203.0.113.7:5000", nil, "203.0.113.7"},
		{"direct client ignores XFF", "203.0.113.7:5000", []string{"198.51.100.1"}, "203.0.113.7"},
		{"proxy without XFF", "10.0.0.1:80", nil, "10.0.0.1"},
		{"proxy with one hop", "10.0.0.1:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"spoofed left hop ignored", "10.0.0.1:80", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1"},
		{"chain of trusted proxies", "10.0.0.1:80", []string{"198.51.100.1, 10.0.0.2, 10.0.0.3"}, "198.51.100.1"},
		{"several header lines", "10.0.0.1:80", []string{"1.2.3.4", "198.51.100.1, 10.0.0.2"}, "198.51.100.1"},
		{"all hops trusted", "10.0.0.1:80", []string{"10.0.0.5, 10.0.0.2"}, "10.0.0.5"},
		{"garbage hop", "10.0.0.1:80", []string{"1.2.3.4, nonsense, 10.0.0.2"}, "10.0.0.2"},
		{"hop with port", "10.0.0.1:80", []string{"198.51.100.1:4711"}, "198.51.100.1"},
		{"IPv6 hop", "[fd00::1]:80", []string{"2001:db8::1"}, "2001:db8::1"},
		{"IPv4-mapped proxy", "[::ffff:10.0.0.1]:80", []string{"198.51.100.1"}, "198.51.100.1"},
		{"empty elements", "10.0.0.1:80", []string{"198.51.100.1, , "}, "198.51.100.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := s.clientAddr(r); got != tt.want {
				t.Errorf("clientAddr = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestIsHTTPS(t *testing.T) {
	s := &Server{}
	if err := s.SetTrustedProxies([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		remote string
		tls    bool
		proto  string
		want   bool
	}{
		{"plain", "203.0.113.7:1", false, "", false},
		{"TLS", "203.0.113.7:1", true, "", true},
		{"untrusted peer claims https", "203.0.113.7:1", false, "https", false},
		{"trusted proxy says https", "10.0.0.1:1", false, "https", true},
		{"trusted proxy says http", "10.0.0.1:1", false, "http", false},
		{"last value counts", "10.0.0.1:1", false, "https, http", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			if tt.tls {
				r.TLS = &tls.ConnectionState{}
			}
			if tt.proto != "" {
				r.Header.Set("X-Forwarded-Proto", tt.proto)
			}
			if got := s.isHTTPS(r); got != tt.want {
				t.Errorf("isHTTPS = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestContentDisposition(t *testing.T) {
	tests := []struct{ name, want string }{
		{"plain.txt", `attachment; filename="plain.txt"; filename*=UTF-8''plain.txt`},
		{"a b;c=d.txt", `attachment; filename="a b;c=d.txt"; filename*=UTF-8''a%20b%3Bc%3Dd.txt`},
		{"見積書 2026.pdf", `attachment; filename="___ 2026.pdf"; filename*=UTF-8''%E8%A6%8B%E7%A9%8D%E6%9B%B8%202026.pdf`},
		{"Ünïcödé.doc", `attachment; filename="_n_c_d_.doc"; filename*=UTF-8''%C3%9Cn%C3%AFc%C3%B6d%C3%A9.doc`},
		{"bad\r\nX-Injected: 1", `attachment; filename="bad__X-Injected: 1"; filename*=UTF-8''bad%0D%0AX-Injected%3A%201`},
		{`q"b\s`, `attachment; filename="q_b_s"; filename*=UTF-8''q%22b%5Cs`},
		{"100%.txt", `attachment; filename="100%.txt"; filename*=UTF-8''100%25.txt`},
		{"", `attachment; filename="download"; filename*=UTF-8''download`},
	}
	for _, tt := range tests {
		if got := contentDisposition(tt.name); got != tt.want {
			t.Errorf("contentDisposition(%q)\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}

func TestSizes(t *testing.T) {
	tests := []struct {
		n            int64
		human, exact string
	}{
		{0, "0 B", "0 bytes"},
		{999, "999 B", "999 bytes"},
		{1024, "1.0 KiB", "1,024 bytes"},
		{1536, "1.5 KiB", "1,536 bytes"},
		{10 << 20, "10.0 MiB", "10,485,760 bytes"},
		{5 << 30, "5.0 GiB", "5,368,709,120 bytes"},
	}
	for _, tt := range tests {
		if got := bytesize.Human(tt.n); got != tt.human {
			t.Errorf("bytesize.Human(%d) = %q, want %q", tt.n, got, tt.human)
		}
		if got := english.byteCount(tt.n); got != tt.exact {
			t.Errorf("byteCount(%d) = %q, want %q", tt.n, got, tt.exact)
		}
	}
	if got := japanese.byteCount(1536); got != "1,536 バイト" {
		t.Errorf("Japanese byteCount = %q", got)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	h := newHarness(t)
	valid := Options{Store: h.store, Blobs: h.blobs, Audit: h.events, MACKey: make([]byte, 32)}
	tests := []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"no store", func(o *Options) { o.Store = nil }, "Store"},
		{"no blobs", func(o *Options) { o.Blobs = nil }, "Blobs"},
		{"no audit", func(o *Options) { o.Audit = nil }, "Audit"},
		{"short key", func(o *Options) { o.MACKey = make([]byte, 16) }, "MACKey"},
		{"negative TTL", func(o *Options) { o.SignedURLTTL = -time.Second }, "SignedURLTTL"},
	}
	for _, tt := range tests {
		o := valid
		tt.change(&o)
		if _, err := New(o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want one naming %s", tt.name, err, tt.want)
		}
	}
	if _, err := New(valid); err != nil {
		t.Errorf("valid options: %v", err)
	}
}
