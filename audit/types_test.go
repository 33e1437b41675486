package audit

import "testing"

func TestKnownTypeFilter(t *testing.T) {
	tests := []struct {
		filter string
		want   bool
	}{
		{"mail.received", true},
		{"audit.purged", true},
		{"admin.token.created", true},
		{"admin.*", true},
		{"mail.*", true},
		{"download.*", true},
		{"notice.sent", true},
		{"notice.failed", true},
		{"notice.*", true},
		{"notice.deferred", false},
		{"scan.clean", true},
		{"scan.infected", true},
		{"scan.error", true},
		{"scan.*", true},
		{"scan.dirty", false},
		{"verify.sent", true},
		{"verify.ok", true},
		{"verify.failed", true},
		{"verify.locked", true},
		{"verify.*", true},
		{"mail.recieved", false},
		{"admin.", false},
		{"nothing.*", false},
		{"mail*", false},
		{"*", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := KnownTypeFilter(tt.filter); got != tt.want {
			t.Errorf("KnownTypeFilter(%q) = %v, want %v", tt.filter, got, tt.want)
		}
	}
}
