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
	}
	for _, tt := range tests {
		err := checkAddress(tt.addr, tt.utf8)
		if (err == nil) != tt.wantOK {
			t.Errorf("checkAddress(%q, utf8=%v) = %v, want ok=%v", tt.addr, tt.utf8, err, tt.wantOK)
		}
	}
}
