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
		{in: "RET=HDRS\tENVID=x", want: map[string]string{"RET": "HDRS", "ENVID": "x"}},
		// A no-break space is not a separator: one ORCPT, not two parameters.
		{in: "ORCPT=utf-8;a@b\u00a0NOTIFY", want: map[string]string{"ORCPT": "utf-8;a@b\u00a0NOTIFY"}},
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

// TestParseArgsKeywordsAreASCII: a keyword outside RFC 5321's esmtp-keyword
// is an error (not a duplicate), and only ASCII is upper-cased, so 'ı' and
// 'ſ' do not turn into I and S.
func TestParseArgsKeywordsAreASCII(t *testing.T) {
	for _, in := range []string{"NOT\u0131FY=SUCCESS", "\u017fMTPUTF8", "X\x01=1", "-X=1", "=1", "RET=HDRS =x", "K\u212a=1"} {
		got, err := parseArgs(in)
		var dup errDuplicateArg
		if err == nil || errors.As(err, &dup) {
			t.Errorf("parseArgs(%q) = %v, %v; want a malformed-keyword error", in, got, err)
		}
	}
	if got := asciiUpper("ret=hdrs \u0131\u017f"); got != "RET=HDRS \u0131\u017f" {
		t.Errorf("asciiUpper folded non-ASCII: %q", got)
	}
	for line, want := range map[string]string{"\u017fTARTTLS": "", "starttls": "STARTTLS", "ma\u0131l x": "", "mail FROM:<a@b>": "MAIL"} {
		cmd, _, _ := parseCmd(line)
		if want == "" && (cmd == "STARTTLS" || cmd == "MAIL") || want != "" && cmd != want {
			t.Errorf("parseCmd(%q) = %q, want %q", line, cmd, want)
		}
	}
}
