package smtpd

import "testing"

func TestCheckAddress(t *testing.T) {
	tests := []struct {
		addr   string
		utf8   bool
		wantOK bool
	}{
		{"alice@example.com", false, true},
		{"a.b+tag@sub.example.co.jp", false, true},
		{"a..b@docomo.ne.jp", false, true},
		{`"john smith"@example.com`, false, true},
		{`"victim@partner.test> ORCPT=rfc822;x"@corp.test`, false, true},
		{`"a\"b"@example.com`, false, true},
		{`"a\\"@example.com`, false, true},
		{"user@[192.0.2.1]", false, true},
		{"user@[IPv6:2001:db8::1]", false, true},
		{"user@example.com.", false, true},
		{"用户@例子.广告", true, true},
		{"用户@example.com", false, false},
		{"a@b@c", false, false},
		{"a@b>x", false, false},
		{"a@b c", false, false},
		{`a@b"c`, false, false},
		{"a@", false, false},
		{"@b", false, false},
		{"a@b..c", false, false},
		{"a b@c", false, false},
		{"a\x00b@example.com", false, false},
		{"a@exa\rmple.com", false, false},
		{"\"a\x00b\"@example.com", false, false},
		{"\"a\tb\"@example.com", false, false},
		{`"unterminated@example.com`, false, false},
		{`"a"b"@example.com`, false, false},
		{"a@[1.2.3.4", false, false},
		{"a\x7f@example.com", false, false},
		{"a\xff@example.com", true, false},
		// Domains policies match as IDNA (UTS #46) maps them; one that
		// does not map is refused (policies.Domain).
		{"v@\uff50\uff41\uff52\uff54\uff4e\uff45\uff52.test", true, true},
		{"v@partner\u3002test", true, true},
		{"v@xn--bcher-kva.test", false, true},
		{"v@a_b.example.com", false, true},
		{"v@xn--zz.test", false, false},  // broken A-label
		{"v@xn--zz.test", true, false},   // also with SMTPUTF8
		{"v@a\u2028b.test", true, false}, // disallowed code point
	}
	for _, tt := range tests {
		err := checkAddress(tt.addr, tt.utf8)
		if (err == nil) != tt.wantOK {
			t.Errorf("checkAddress(%q, utf8=%v) = %v, want ok=%v", tt.addr, tt.utf8, err, tt.wantOK)
		}
	}
}
