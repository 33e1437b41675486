package config

import (
	"strings"
	"testing"
)

// smtp.auth.max_concurrent (bounded password hashing) only takes effect
// with smtp.auth.users_file, like its siblings allow_login, max_failures
// and failure_window, which are refused without it (issue 9 item 21: "the
// same for every other key that only matters under a setting that is not
// chosen"). max_concurrent alone is still accepted and silently ignored.
func TestMaxConcurrentWithoutUsersRefused(t *testing.T) {
	_, err := Parse(strings.NewReader("smtp:\n  auth: {max_concurrent: 7}\n"))
	if err == nil {
		t.Fatal("Parse accepted smtp.auth.max_concurrent without smtp.auth.users_file")
	}
	for _, w := range []string{"smtp.auth.max_concurrent", "smtp.auth.users_file"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}
