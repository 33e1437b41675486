package linkserver

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/audit"
)

// An attacker with one IPv6 /64 (what any home line or VPS gets) has 2^64
// client addresses. Counting denials per /128 lets it write the whole
// burst of download.denied events from every address it rotates through,
// so the audit log grows without bound as before the limiter: the limit
// must hold per /64 (as it does per IPv4 address), so the flood is
// aggregated and then answered 429 like the same flood from one address.
func TestDenialFloodFromOneIPv6PrefixIsAggregated(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.TrustedProxies = mustPrefixes("127.0.0.1/32")
		o.DenialBurst, o.DenialLimit = 5, 20
		o.DenialWindow = time.Hour // flushed by Close
	})
	const attempts = 100
	statuses := map[int]int{}
	for i := range attempts {
		token := fmt.Sprintf("invented%035d", i)
		// One address of the attacker's /64 per request.
		client := fmt.Sprintf("2001:db8:66:66::%x", i+1)
		resp, _ := h.do(http.DefaultClient, http.MethodPost, "/d/"+token,
			http.Header{"X-Forwarded-For": {client}, "Content-Type": {"application/x-www-form-urlencoded"}},
			strings.NewReader("csrf=x"))
		statuses[resp.StatusCode]++
	}
	n := len(h.events.ofType(audit.TypeDownloadDenied))
	if n > 5 {
		t.Errorf("%d download.denied events written during a flood from one /64, want at most the burst of 5", n)
	}
	if statuses[http.StatusTooManyRequests] != attempts-20 {
		t.Errorf("statuses %v, want 20 × 404 then 429 for the one /64", statuses)
	}
}

// The /64 is the unit of the limit, not of the record: each event recorded
// one by one carries the real address of its request, the aggregate names
// the /64 it stands for, the neighbouring /64 is another client, and an
// IPv4 client reached as IPv4-mapped IPv6 is the same client as its IPv4
// address.
func TestDenialLimitKeysByClientPrefix(t *testing.T) {
	h := newHarness(t, func(o *Options) {
		o.TrustedProxies = mustPrefixes("127.0.0.1/32")
		o.DenialBurst, o.DenialLimit = 3, 6
		o.DenialWindow = time.Hour // flushed by Close
	})
	post := func(i int, client string) int {
		token := fmt.Sprintf("invented%035d", i)
		resp, _ := h.do(http.DefaultClient, http.MethodPost, "/d/"+token,
			http.Header{"X-Forwarded-For": {client}, "Content-Type": {"application/x-www-form-urlencoded"}},
			strings.NewReader("csrf=x"))
		return resp.StatusCode
	}
	var attacker []string
	for i := range 10 {
		attacker = append(attacker, netip.MustParseAddr(fmt.Sprintf("2001:db8:66:66:%x::%x", i, i+1)).String())
	}
	statuses := map[int]int{}
	for i, client := range attacker {
		statuses[post(i, client)]++
	}
	if statuses[http.StatusNotFound] != 6 || statuses[http.StatusTooManyRequests] != 4 {
		t.Errorf("attacker's /64: statuses %v, want 6 × 404 then 4 × 429", statuses)
	}
	// The next /64 is someone else: still within its own burst.
	if got := post(100, "2001:db8:66:67::1"); got != http.StatusNotFound {
		t.Errorf("neighbouring /64 got %d, want 404", got)
	}
	// IPv4 written as IPv4-mapped IPv6 and as IPv4 is one client.
	statuses = map[int]int{}
	for i := range 8 {
		client := "198.51.100.9"
		if i%2 == 0 {
			client = "::ffff:198.51.100.9"
		}
		statuses[post(200+i, client)]++
	}
	if statuses[http.StatusNotFound] != 6 || statuses[http.StatusTooManyRequests] != 2 {
		t.Errorf("IPv4 client, mapped and not: statuses %v, want 6 × 404 then 2 × 429", statuses)
	}

	h.server.Close()
	var single []audit.Event
	aggregates := map[string]audit.Event{}
	for _, e := range h.events.ofType(audit.TypeDownloadDenied) {
		if strings.HasPrefix(e.Detail, "aggregated: ") {
			aggregates[e.ClientAddr+" "+e.Reason] = e
			continue
		}
		single = append(single, e)
	}
	// The burst of the attacker's /64, then the neighbour, then the IPv4
	// client's burst: each with the address the proxy reported.
	want := []string{attacker[0], attacker[1], attacker[2], "2001:db8:66:67::1",
		"198.51.100.9", "198.51.100.9", "198.51.100.9"}
	if len(single) != len(want) {
		t.Fatalf("%d single download.denied events, want %d: %+v", len(single), len(want), single)
	}
	for i, e := range single {
		if e.ClientAddr != want[i] {
			t.Errorf("event %d: client_addr %q, want the real address %q", i, e.ClientAddr, want[i])
		}
	}
	// Aggregates: ClientAddr is the first address aggregated, the detail
	// names the /64 (or the IPv4 address) that was counted.
	checks := []struct{ key, prefix string }{
		{attacker[3] + " unknown", "aggregated: 3 denials (reason unknown) from 2001:db8:66:66::/64 between "},
		{attacker[6] + " " + reasonRateLimited, "aggregated: 4 denials (reason rate_limited) from 2001:db8:66:66::/64 between "},
		{"198.51.100.9 unknown", "aggregated: 3 denials (reason unknown) from 198.51.100.9 between "},
		{"198.51.100.9 " + reasonRateLimited, "aggregated: 2 denials (reason rate_limited) from 198.51.100.9 between "},
	}
	for _, c := range checks {
		e, ok := aggregates[c.key]
		if !ok {
			t.Errorf("no aggregate for %s; have %v", c.key, aggregates)
			continue
		}
		if !strings.HasPrefix(e.Detail, c.prefix) {
			t.Errorf("aggregate %s: detail %q, want prefix %q", c.key, e.Detail, c.prefix)
		}
	}
	if len(aggregates) != len(checks) {
		t.Errorf("%d aggregates, want %d: %v", len(aggregates), len(checks), aggregates)
	}
}
