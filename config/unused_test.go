package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A key that only matters under a setting the file does not choose is
// refused, naming the key and the setting, instead of silently ignored.
func TestDependentKeysRefused(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // all must appear in the error
	}{
		{"redis url without backend", "store:\n  redis:\n    url: \"redis://10.0.0.5:6379/0\"\n",
			[]string{"store.redis.url", "store.backend: redis"}},
		{"redis url with backend sqlite", "store:\n  backend: sqlite\n  redis:\n    url: \"redis://10.0.0.5:6379/0\"\n    password: s3cret\n",
			[]string{"store.redis.url, store.redis.password", "store.backend: redis"}},
		{"redis key prefix alone", "store:\n  redis: {key_prefix: \"gw:\"}\n", []string{"store.redis.key_prefix", "store.backend: redis"}},
		{"allow_login without users", "smtp:\n  auth: {allow_login: true}\n", []string{"smtp.auth.allow_login", "smtp.auth.users_file"}},
		{"max_failures without users", "smtp:\n  auth: {max_failures: 3}\n", []string{"smtp.auth.max_failures", "smtp.auth.users_file"}},
		{"failure_window without users", "smtp:\n  auth: {failure_window: 1h}\n", []string{"smtp.auth.failure_window", "smtp.auth.users_file"}},
		{"ca_file with tls none", "next_hop:\n  tls: none\n  ca_file: /etc/ca.pem\n", []string{"next_hop.ca_file", "next_hop.tls"}},
		{"server_name with outbox", "next_hop:\n  address: \"outbox:/tmp/o\"\n  server_name: mx.example.com\n", []string{"next_hop.server_name"}},
		{"skip verify with tls none", "next_hop:\n  tls: none\n  insecure_skip_verify: true\n", []string{"next_hop.insecure_skip_verify"}},
		{"timeout with outbox", "next_hop:\n  address: \"outbox:/tmp/o\"\n  timeout: 10s\n", []string{"next_hop.timeout", "next_hop.address"}},
		{"tls with outbox", "next_hop:\n  address: \"outbox:/tmp/o\"\n  tls: required\n", []string{"next_hop.tls", "next_hop.address"}},
		{"tokens without admin listen", "admin:\n  listen: \"\"\n  tokens:\n    - {name: a, sha256: \"" + strings.Repeat("a", 64) + "\", role: admin, networks: [\"127.0.0.1\"]}\n",
			[]string{"admin.tokens", "admin.listen"}},
		{"proxies without admin listen", "admin:\n  listen: \"\"\n  trusted_proxies: [\"10.0.0.1\"]\n", []string{"admin.trusted_proxies", "admin.listen"}},
		{"hold_for without hold rule", "quarantine:\n  hold_for: 2h\npolicies:\n  - {name: q, action: quarantine}\n",
			[]string{"quarantine.hold_for", "action: hold"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.yaml))
			if err == nil {
				t.Fatalf("Parse accepted %q", tt.yaml)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// The same keys are fine under the setting they belong to, and empty
// sections or nulls set nothing.
func TestDependentKeysAccepted(t *testing.T) {
	for name, doc := range map[string]string{
		"redis backend":      "store:\n  backend: redis\n  redis:\n    url: \"redis://10.0.0.5:6379/0\"\n    key_prefix: \"gw:\"\n",
		"empty redis":        "store:\n  backend: sqlite\n  redis: {}\n",
		"null redis":         "store:\n  redis:\n",
		"smtp hop with tls":  "next_hop:\n  address: \"mx.example.com:25\"\n  tls: required\n  server_name: mx.example.com\n  timeout: 30s\n",
		"hold rule":          "quarantine:\n  hold_for: 2h\npolicies:\n  - {name: h, action: hold}\n",
		"admin with proxies": "admin:\n  listen: \"127.0.0.1:8081\"\n  trusted_proxies: [\"10.0.0.1\"]\n",
		"outbox, defaults":   "next_hop:\n  address: \"outbox:/tmp/o\"\n",
		"empty file":         "",
	} {
		if _, err := Parse(strings.NewReader(doc)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The admin's actual case, on the real file through Load: the message
// names both keys.
func TestLoadRefusesRedisURLWithoutBackend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "attachgate.yaml")
	doc := "storage:\n  dir: /srv/shared/attachgate\nstore:\n  redis:\n    url: \"redis://redis.internal:6379/0\"\n"
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil {
		t.Fatal("a Redis URL without store.backend: redis was accepted: the gateway would run on SQLite")
	}
	if !strings.Contains(err.Error(), "store.redis.url") || !strings.Contains(err.Error(), "store.backend") {
		t.Errorf("error %q does not name store.redis and store.backend", err)
	}
}
