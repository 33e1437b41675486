package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "smtpp:\n  listen: x\n", `unknown key "smtpp"`},
		{"unknown nested key", "smtp:\n  lisen: \"127.0.0.1:25\"\n", `unknown key "smtp.lisen"`},
		{"bad listen", "smtp:\n  listen: \"nonsense\"\n", "smtp.listen: want host:port"},
		{"bad network", "smtp:\n  trusted_networks: [\"10.0.0.0/33\"]\n", "smtp.trusted_networks"},
		{"bad duration", "links:\n  default_expiry: \"7 days\"\n", `"7 days" is not a duration`},
		{"negative duration", "links:\n  default_expiry: \"-1h\"\n", "links.default_expiry: must be a positive duration"},
		{"bad language", "links:\n  language: fr\n", "links.language: want en, ja or both"},
		{"bad base url", "links:\n  base_url: \"ftp://x\"\n", "links.base_url: want an http or https URL"},
		{"bad zone", "links:\n  time_zone: Mars/Olympus\n", "links.time_zone: unknown zone"},
		{"bad size", "smtp:\n  max_message_bytes: 0\n", "smtp.max_message_bytes: must be positive"},
		{"empty outbox", "next_hop:\n  address: \"outbox:\"\n", "next_hop.address: outbox: needs a directory"},
		{"bad hop", "next_hop:\n  address: \"mx.example.com\"\n", "next_hop.address: want host:port"},
		// admin.New refuses this hash: a file that passes here but not
		// there stops the daemon at start and, on SIGHUP, keeps the old
		// tokens while the new metrics_networks apply.
		{"empty token hash", "admin:\n  tokens:\n    - {name: t, sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855, role: admin, networks: [\"127.0.0.1\"]}\n", "admin.tokens[0].sha256"},
		{"bad metrics network", "admin:\n  metrics_networks: [\"prometheus\"]\n", `admin.metrics_networks: "prometheus" is not a network`},
		{"bad log format", "log:\n  format: logfmt\n", `log.format: want text or json, got "logfmt"`},
		{"reserve not below total", "smtp:\n  max_connections: 20\n  reserved_connections: 20\n", "smtp.reserved_connections: must be at least 0 and less than smtp.max_connections (20)"},
		{"negative reserve", "smtp:\n  reserved_connections: -1\n", "smtp.reserved_connections: must be at least 0"},
		{"zero idle timeout", "smtp:\n  untrusted_idle_timeout: 0s\n", "smtp.untrusted_idle_timeout: must be a positive duration"},
		{"no password checks", "smtp:\n  auth:\n    max_concurrent: 0\n", "smtp.auth.max_concurrent: must be positive"},
		{"bad name sync", "storage:\n  name_sync: never\n", `storage.name_sync: want auto or directory, got "never"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.yaml))
			if err == nil {
				t.Fatalf("Parse accepted %q", tt.yaml)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestParseContractKeys(t *testing.T) {
	const doc = `
smtp:
  listen: "127.0.0.1:2525"
  hostname: "gw.example.com"
  max_message_bytes: 157286400
  trusted_networks: ["127.0.0.0/8", "::1/128", "192.0.2.7"]
next_hop:
  address: "127.0.0.1:10026"
links:
  listen: "127.0.0.1:8080"
  base_url: "https://files.example.com/"
  default_expiry: "3s"
  time_zone: Asia/Tokyo
storage:
  dir: "./data"
`
	c, err := Parse(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTP.Hostname != "gw.example.com" || c.SMTP.MaxMessageBytes != 157286400 {
		t.Errorf("smtp = %+v", c.SMTP)
	}
	if got := len(c.SMTP.Trusted()); got != 3 {
		t.Errorf("trusted networks = %d, want 3", got)
	}
	if c.SMTP.Trusted()[2].Bits() != 32 {
		t.Errorf("bare address should be a /32, got %v", c.SMTP.Trusted()[2])
	}
	if c.Links.BaseURL != "https://files.example.com" {
		t.Errorf("base_url = %q, trailing slash not trimmed", c.Links.BaseURL)
	}
	if c.Links.DefaultExpiry.D() != 3*time.Second {
		t.Errorf("default_expiry = %v", c.Links.DefaultExpiry.D())
	}
	if c.Links.Location().String() != "Asia/Tokyo" {
		t.Errorf("location = %v", c.Links.Location())
	}
	if c.Links.Language != "both" {
		t.Errorf("language default = %q, want both", c.Links.Language)
	}
	if c.NextHop.OutboxDir() != "" {
		t.Errorf("host:port next hop taken for an outbox")
	}
}

func TestDemoConfigLoads(t *testing.T) {
	c, err := Load("demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.NextHop.OutboxDir() != "./data/outbox" {
		t.Errorf("demo outbox = %q", c.NextHop.OutboxDir())
	}
}

func TestMetricsNetworksParsed(t *testing.T) {
	c, err := Parse(strings.NewReader("admin:\n  metrics_networks: [\"10.1.2.0/24\", \"192.0.2.7\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Admin.MetricsNets()
	if len(got) != 2 || got[0].String() != "10.1.2.0/24" || got[1].String() != "192.0.2.7/32" {
		t.Fatalf("MetricsNets() = %v, want [10.1.2.0/24 192.0.2.7/32]", got)
	}
}

func TestReservedConnectionsDefault(t *testing.T) {
	tests := []struct {
		yaml string
		want int
	}{
		{"smtp:\n  listen: \"127.0.0.1:2525\"\n", 50},
		{"smtp:\n  max_connections: 40\n", 10},
		{"smtp:\n  max_connections: 40\n  reserved_connections: 0\n", 0},
		{"smtp:\n  max_connections: 40\n  reserved_connections: 39\n", 39},
	}
	for _, tt := range tests {
		c, err := Parse(strings.NewReader(tt.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tt.yaml, err)
		}
		if got := c.SMTP.Reserved(); got != tt.want {
			t.Errorf("%q: reserved %d, want %d", tt.yaml, got, tt.want)
		}
	}
}
