package scan

import (
	"errors"
	"strings"
	"testing"
)

func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		line, sig string
		err       bool
		sizeLimit bool
	}{
		{"stream: OK", "", false, false},
		{"stream: Eicar-Test-Signature FOUND", "Eicar-Test-Signature", false, false},
		{"stream: Win.Test.EICAR_HDB-1 FOUND", "Win.Test.EICAR_HDB-1", false, false},
		{"INSTREAM size limit exceeded. ERROR", "", true, true},
		{"stream: Can't allocate memory ERROR", "", true, false},
		{"UNKNOWN COMMAND", "", true, false},
		{"", "", true, false},
		{"stream: FOUND", "", true, false},
	} {
		sig, err := parseReply(tc.line)
		if sig != tc.sig || (err != nil) != tc.err || errors.Is(err, ErrSizeLimit) != tc.sizeLimit {
			t.Errorf("parseReply(%q) = %q, %v", tc.line, sig, err)
		}
	}
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"stream: OK\x00", "stream: OK"},
		{"PONG\n", "PONG"},
		{"stream: OK", "stream: OK"}, // clamd closed without a terminator
		{strings.Repeat("x", 5000), strings.Repeat("x", maxReply)},
	} {
		got, err := readReply(strings.NewReader(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("readReply(%.20q) = %.20q, %v", tc.in, got, err)
		}
	}
	if _, err := readReply(strings.NewReader("")); err == nil {
		t.Error("empty reply accepted")
	}
}
