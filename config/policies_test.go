package config

import (
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/policies"
)

func TestParsePoliciesAndQuarantine(t *testing.T) {
	const doc = `
policies:
  - name: keep-small-images
    match: {content_types: ["image/*"], max_size: 1048576}
    action: keep
  - name: block-executables
    match: {extensions: [".exe", ".scr", ".js"]}
    action: reject
  - name: hold-external-finance
    match: {sender_domains: ["finance.example.com"], recipient_domains_not: ["example.com"]}
    action: hold
quarantine:
  hold_for: "2h"
`
	c, err := Parse(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Policies) != 3 || c.Policies[0].Match.MaxSize == nil || *c.Policies[0].Match.MaxSize != 1048576 {
		t.Fatalf("policies = %+v", c.Policies)
	}
	if c.Quarantine.HoldFor.D() != 2*time.Hour {
		t.Errorf("hold_for = %v", c.Quarantine.HoldFor.D())
	}
	e := c.PolicyEngine()
	d := e.Decide(policies.Envelope{From: "a@finance.example.com", To: []string{"x@other.example"}},
		policies.Part{Filename: "q.xlsx", ContentType: "application/vnd.ms-excel", Size: 10})
	if d.Action != policies.Hold || d.Rule != "hold-external-finance" {
		t.Errorf("decision = %+v", d)
	}
}

func TestQuarantineDefaults(t *testing.T) {
	c, err := Parse(strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if c.Quarantine.HoldFor.D() != time.Hour {
		t.Errorf("hold_for default = %v, want 1h", c.Quarantine.HoldFor.D())
	}
	if c.Quarantine.MaxRetryAge.D() != 120*time.Hour || c.Quarantine.Retention.D() != 720*time.Hour {
		t.Errorf("max_retry_age, retention defaults = %v, %v; want 120h, 720h", c.Quarantine.MaxRetryAge.D(), c.Quarantine.Retention.D())
	}
	if c.PolicyEngine() == nil || c.PolicyEngine().Rules() != 0 {
		t.Errorf("no policies: engine %+v", c.PolicyEngine())
	}
	d := c.PolicyEngine().Decide(policies.Envelope{}, policies.Part{Filename: "a.exe", Size: 1})
	if d.Action != policies.Link {
		t.Errorf("default decision = %+v", d)
	}
}

func TestPolicyErrorsNameTheKey(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown rule key", "policies:\n  - name: a\n    actoin: keep\n", `unknown key "policies[].actoin"`},
		{"unknown match key", "policies:\n  - name: a\n    match: {extension: [\".exe\"]}\n    action: keep\n", `unknown key "policies[].match.extension"`},
		{"unknown quarantine key", "quarantine:\n  hold: 1h\n", `unknown key "quarantine.hold"`},
		{"bad action", "policies:\n  - name: a\n    action: drop\n", `policies[0].action: want link, keep, reject, quarantine, approve or hold, got "drop"`},
		{"missing name", "policies:\n  - action: keep\n", "policies[0].name: must be set"},
		{"duplicate name", "policies:\n  - {name: a, action: keep}\n  - {name: a, action: link}\n", `policies[1].name: duplicate rule name "a"`},
		{"bad content type", "policies:\n  - name: a\n    match: {content_types: [\"image\"]}\n    action: keep\n", "policies[0].match.content_types"},
		{"bad size", "policies:\n  - name: a\n    match: {max_size: -3}\n    action: keep\n", "policies[0].match.max_size: must not be negative"},
		{"size not a number", "policies:\n  - name: a\n    match: {max_size: big}\n    action: keep\n", "cannot unmarshal"},
		{"bad hold_for", "quarantine:\n  hold_for: \"0s\"\n", "quarantine.hold_for: must be a positive duration"},
		{"bad max_retry_age", "quarantine:\n  max_retry_age: \"-1h\"\n", "quarantine.max_retry_age: must be a positive duration"},
		{"zero retention", "quarantine:\n  retention: \"0s\"\n", "quarantine.retention: must be a positive duration"},
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

func TestRedisAllowsPerPartPolicies(t *testing.T) {
	doc := "store:\n  backend: redis\n  redis: {url: \"redis://127.0.0.1:6379/0\"}\npolicies:\n  - {name: k, action: keep}\n  - {name: r, match: {extensions: [exe]}, action: reject}\n"
	if _, err := Parse(strings.NewReader(doc)); err != nil {
		t.Fatalf("keep and reject need no quarantine: %v", err)
	}
}

func TestRedisAllowsHeldMail(t *testing.T) {
	doc := "store:\n  backend: redis\n  redis: {url: \"redis://127.0.0.1:6379/0\"}\npolicies:\n  - {name: h, action: hold}\n  - {name: q, action: quarantine}\n" +
		"  - {name: a, action: approve, approvers: [boss@example.com]}\n"
	if _, err := Parse(strings.NewReader(doc)); err != nil {
		t.Fatalf("held mail and its approval state are kept in Redis too: %v", err)
	}
}
