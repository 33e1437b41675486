package config

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/attachgate/attachgate/policies"
)

func TestParseScan(t *testing.T) {
	c, err := Parse(strings.NewReader("scan:\n  clamd: \"unix:/run/clamav/clamd.ctl\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Scan.Enabled() || c.Scan.Timeout.D() != 60*time.Second || c.Scan.OnError != "tempfail" || c.Scan.OnInfected != policies.Quarantine {
		t.Fatalf("defaults: %+v", c.Scan)
	}
	c, err = Parse(strings.NewReader(`
scan:
  clamd: "tcp:127.0.0.1:3310"
  timeout: 20s
  on_error: pass
  on_infected: reject
policies:
  - name: ppap
    match: {encrypted_archive: true}
    action: hold
    on_infected: quarantine
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Scan.Timeout.D() != 20*time.Second || c.Scan.OnError != "pass" || c.Scan.OnInfected != policies.Reject ||
		c.PolicyEngine().OnInfected("ppap") != policies.Quarantine {
		t.Fatalf("parsed: %+v", c.Scan)
	}
	if d, c0 := Defaults(), (&Config{}); d.Scan.Enabled() || c0.Scan.Enabled() {
		t.Fatal("scanning is on by default")
	}
}

func TestScanKeysValidated(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"unknown key", "scan:\n  clamd: tcp:127.0.0.1:3310\n  clamav: x\n", `unknown key "scan.clamav"`},
		{"no scheme", "scan:\n  clamd: 127.0.0.1:3310\n", "scan.clamd:"},
		{"tcp without port", "scan:\n  clamd: tcp:127.0.0.1\n", "scan.clamd:"},
		{"relative socket", "scan:\n  clamd: unix:clamd.ctl\n", "scan.clamd:"},
		{"bad timeout", "scan:\n  clamd: tcp:127.0.0.1:3310\n  timeout: soon\n", "not a duration"},
		{"zero timeout", "scan:\n  clamd: tcp:127.0.0.1:3310\n  timeout: 0s\n", "scan.timeout: must be a positive duration"},
		{"bad on_error", "scan:\n  clamd: tcp:127.0.0.1:3310\n  on_error: ignore\n", `scan.on_error: want tempfail or pass, got "ignore"`},
		{"bad on_infected", "scan:\n  clamd: tcp:127.0.0.1:3310\n  on_infected: link\n", `scan.on_infected: want quarantine or reject, got "link"`},
		{"bad rule on_infected", "scan:\n  clamd: tcp:127.0.0.1:3310\npolicies:\n  - name: r\n    action: link\n    on_infected: keep\n", `policies[0].on_infected: want quarantine or reject`},
		{"on_infected without clamd", "policies:\n  - name: r\n    action: link\n    on_infected: reject\n", "policies[0].on_infected: takes effect only with scan.clamd"},
		{"timeout without clamd", "scan:\n  timeout: 5s\n", "scan.timeout: set, but it only applies with scan.clamd"},
		{"on_error without clamd", "scan:\n  on_error: pass\n", "scan.on_error: set, but it only applies with scan.clamd"},
		{"quarantine on redis", "store:\n  backend: redis\n  redis: {url: \"redis://127.0.0.1:6379/0\"}\nscan:\n  clamd: tcp:127.0.0.1:3310\n", "scan.on_infected: quarantine needs store.backend: sqlite"},
		{"unknown match field", "policies:\n  - name: r\n    action: hold\n    match: {encrypted_zip: true}\n", `unknown key "policies[].match.encrypted_zip"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := Parse(strings.NewReader("store:\n  backend: redis\n  redis: {url: \"redis://127.0.0.1:6379/0\"}\nscan:\n  clamd: tcp:127.0.0.1:3310\n  on_infected: reject\n")); err != nil {
		t.Errorf("reject on redis: %v", err)
	}
}

// TestReadmeScanConfig: the worked configuration of README.md's "Malware
// scanning" section is valid and means what the text says.
func TestReadmeScanConfig(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(readme), "\n## Malware scanning\n")
	if !ok {
		t.Fatal("README.md has no Malware scanning section")
	}
	_, block, ok := strings.Cut(sec, "```yaml\n")
	if !ok {
		t.Fatal("the section has no yaml block")
	}
	block, _, _ = strings.Cut(block, "```")
	c, err := Parse(strings.NewReader(block))
	if err != nil {
		t.Fatalf("README scan config: %v\n%s", err, block)
	}
	e := c.PolicyEngine()
	if c.Scan.Clamd != "unix:/run/clamav/clamd.ctl" || c.Scan.OnInfected != policies.Quarantine ||
		e.OnInfected("outside") != policies.Reject || e.OnInfected("ppap") != "" {
		t.Fatalf("README scan config parsed as %+v", c.Scan)
	}
	env := policies.Envelope{From: "a@corp.example", To: []string{"x@partner.example"}}
	zip := policies.Part{Filename: "a.zip", ContentType: "application/zip", Size: 100, EncryptedArchive: true}
	if d := e.Decide(env, zip); d.Rule != "ppap" || d.Action != policies.Hold {
		t.Fatalf("encrypted zip to outside: %+v", d)
	}
}
