package smtp

import (
	"errors"
	"testing"
)

// TestParseArgsDuplicates covers patch 7: a keyword given twice, in any
// case, is an error naming it; distinct keywords are kept.
func TestParseArgsDuplicates(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    map[string]string
		wantDup string
	}{
		{in: "RET=HDRS ENVID=x", want: map[string]string{"RET": "HDRS", "ENVID": "x"}},
		{in: "SMTPUTF8 BODY=8BITMIME", want: map[string]string{"SMTPUTF8": "", "BODY": "8BITMIME"}},
		{in: "RET=HDRS RET=FULL", wantDup: "RET"},
		{in: "ret=HDRS Ret=HDRS", wantDup: "RET"},
		{in: "SMTPUTF8 smtputf8", wantDup: "SMTPUTF8"},
		{in: "NOTIFY=NEVER BODY=7BIT NOTIFY=NEVER", wantDup: "NOTIFY"},
	} {
		got, err := parseArgs(tt.in)
		var dup errDuplicateArg
		switch {
		case tt.wantDup != "":
			if !errors.As(err, &dup) || string(dup) != tt.wantDup {
				t.Errorf("parseArgs(%q) = %v, %v; want duplicate %s", tt.in, got, err, tt.wantDup)
			}
		case err != nil || len(got) != len(tt.want):
			t.Errorf("parseArgs(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		default:
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("parseArgs(%q)[%s] = %q, want %q", tt.in, k, got[k], v)
				}
			}
		}
	}
}

// TestDuplicateArgReply: the reply names only keyword-like parameters, so
// a client's arbitrary bytes are not echoed.
func TestDuplicateArgReply(t *testing.T) {
	for in, want := range map[string]string{
		"RET":                   "Duplicate MAIL parameter RET",
		"X-FOO1":                "Duplicate MAIL parameter X-FOO1",
		"-X":                    "Duplicate MAIL parameter",
		"X\x01":                 "Duplicate MAIL parameter",
		"Ä":                     "Duplicate MAIL parameter",
		"ABCDEFGHIJKLMNOPQRSTU": "Duplicate MAIL parameter",
		"":                      "Duplicate MAIL parameter",
	} {
		if got := errDuplicateArg(in).reply("MAIL"); got != want {
			t.Errorf("reply(%q) = %q, want %q", in, got, want)
		}
	}
}
