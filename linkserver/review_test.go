package linkserver

import (
	"fmt"
	"net/http"
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
