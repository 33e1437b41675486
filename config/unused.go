package config

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/attachgate/attachgate/policies"
)

// dependentKey is a key that only takes effect under a setting: written
// while that setting is not chosen, it would be silently ignored, and the
// admin would believe it in force (a store.redis.url without store.backend:
// redis runs on SQLite, so two instances "sharing Redis" each keep their own
// state). Such a file is refused, naming the key and the setting it needs.
type dependentKey struct {
	key    string // dotted path; a section covers every key under it
	active func(c *Config) bool
	needs  string // the setting to choose, in config syntax
	why    string // what the key does and where it is ignored
}

var dependentKeys = []dependentKey{
	{"store.redis", func(c *Config) bool { return c.Store.Backend == "redis" },
		"store.backend: redis", "without it the gateway runs on the SQLite database under storage.dir and never connects to Redis"},
	{"smtp.auth.allow_login", authEnabled, "smtp.auth.users_file", "AUTH is not offered without a users file"},
	{"smtp.auth.max_failures", authEnabled, "smtp.auth.users_file", "AUTH is not offered without a users file"},
	{"smtp.auth.failure_window", authEnabled, "smtp.auth.users_file", "AUTH is not offered without a users file"},
	{"smtp.auth.max_concurrent", authEnabled, "smtp.auth.users_file", "AUTH is not offered without a users file, so no password is ever hashed"},
	{"next_hop.tls", hopIsSMTP, "next_hop.address: host:port", "the outbox: next hop writes files and speaks no SMTP"},
	{"next_hop.timeout", hopIsSMTP, "next_hop.address: host:port", "the outbox: next hop writes files and speaks no SMTP"},
	{"next_hop.server_name", hopUsesTLS, "next_hop.tls: opportunistic or required (and a host:port address)", "no certificate is checked without TLS to the next hop"},
	{"next_hop.ca_file", hopUsesTLS, "next_hop.tls: opportunistic or required (and a host:port address)", "no certificate is checked without TLS to the next hop"},
	{"next_hop.insecure_skip_verify", hopUsesTLS, "next_hop.tls: opportunistic or required (and a host:port address)", "no certificate is checked without TLS to the next hop"},
	{"admin.trusted_proxies", adminEnabled, "admin.listen", "the admin API is off while admin.listen is empty"},
	{"admin.tokens", adminEnabled, "admin.listen", "the admin API is off while admin.listen is empty"},
	{"scan.timeout", scanEnabled, "scan.clamd", "nothing is scanned without a clamd address"},
	{"scan.on_error", scanEnabled, "scan.clamd", "nothing is scanned without a clamd address"},
	{"scan.on_infected", scanEnabled, "scan.clamd", "nothing is scanned without a clamd address"},
	{"quarantine.hold_for", holdRuleExists, "a policy with action: hold", "only held mail is released after hold_for"},
}

func authEnabled(c *Config) bool  { return c.SMTP.Auth.UsersFile != "" }
func hopIsSMTP(c *Config) bool    { return c.NextHop.OutboxDir() == "" }
func hopUsesTLS(c *Config) bool   { return hopIsSMTP(c) && c.NextHop.TLS != "none" }
func adminEnabled(c *Config) bool { return c.Admin.Listen != "" }
func scanEnabled(c *Config) bool  { return c.Scan.Enabled() }
func holdRuleExists(c *Config) bool {
	for _, r := range c.Policies {
		if r.Action == policies.Hold {
			return true
		}
	}
	return false
}

// checkDependentKeys refuses keys the file sets (root is the parsed
// document) whose setting c does not choose. Each error names the key and
// the setting.
func (c *Config) checkDependentKeys(root *yaml.Node) []error {
	var errs []error
	for _, d := range dependentKeys {
		keys := setKeys(root, d.key)
		if len(keys) == 0 || d.active(c) {
			continue
		}
		errs = append(errs, fmt.Errorf("%s: set, but it only applies with %s (%s): choose that setting or remove %s",
			strings.Join(keys, ", "), d.needs, d.why, d.key))
	}
	return errs
}

// setKeys returns the dotted keys the document sets at or under key: key
// itself for a value, the keys inside for a section; none for an absent
// key, a null or an empty section.
func setKeys(root *yaml.Node, key string) []string {
	n := root
	if n == nil {
		return nil
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	for _, part := range strings.Split(key, ".") {
		n = child(n, part)
		if n == nil {
			return nil
		}
	}
	switch n.Kind {
	case yaml.MappingNode:
		var keys []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			if v := n.Content[i+1]; !(v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
				keys = append(keys, key+"."+n.Content[i].Value)
			}
		}
		return keys
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			return nil
		}
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
	}
	return []string{key}
}

// child is the value of key in mapping n, nil when n is no mapping or
// lacks the key.
func child(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	var v *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			v = n.Content[i+1]
		}
	}
	return v
}
