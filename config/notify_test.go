package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/attachgate/attachgate/notify/mailtmpl"
)

func TestNotifyKeys(t *testing.T) {
	overrides := t.TempDir()
	if err := os.WriteFile(filepath.Join(overrides, "code.en.subject"), []byte("Code {{.Code}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, "dsn.ja.html"), []byte("<p>{{.Nope}}</p>"), 0o600); err != nil {
		t.Fatal(err)
	}
	misnamed := t.TempDir()
	if err := os.WriteFile(filepath.Join(misnamed, "code.en.subj"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, yaml, wantErr string
		check               func(t *testing.T, c *Config)
	}{
		{name: "defaults", yaml: "smtp:\n  hostname: gw.corp.example\n", check: func(t *testing.T, c *Config) {
			if c.Notify.From != "attachgate@gw.corp.example" || c.Notify.ReturnPath != "" || c.Notify.Templates() == nil {
				t.Errorf("notify = %+v", c.Notify)
			}
		}},
		{name: "all set", yaml: "notify:\n  from: \"Attachgate <attachgate@corp.example>\"\n  return_path: bounces@corp.example\n  templates_dir: " + overrides + "\n",
			check: func(t *testing.T, c *Config) {
				r, err := c.Notify.Templates().Render("code", "en", mailtmpl.CodeData{Code: "1"})
				if err != nil || r.Subject != "Code 1" {
					t.Errorf("override not used: %q (%v)", r.Subject, err)
				}
			}},
		{name: "from not an address", yaml: "notify:\n  from: attachgate\n", wantErr: "notify.from:"},
		{name: "from with a line break", yaml: "notify:\n  from: \"a@corp.example\\r\\nBcc: x@y\"\n", wantErr: "notify.from:"},
		{name: "from two addresses", yaml: "notify:\n  from: \"a@corp.example, b@corp.example\"\n", wantErr: "notify.from:"},
		{name: "return path with a name", yaml: "notify:\n  return_path: \"Bounces <b@corp.example>\"\n", wantErr: "notify.return_path:"},
		{name: "return path in brackets", yaml: "notify:\n  return_path: \"<b@corp.example>\"\n", wantErr: "notify.return_path:"},
		{name: "return path without domain", yaml: "notify:\n  return_path: bounces\n", wantErr: "notify.return_path:"},
		{name: "templates dir missing", yaml: "notify:\n  templates_dir: " + filepath.Join(overrides, "nope") + "\n", wantErr: "notify.templates_dir:"},
		{name: "bad template names the file", yaml: "notify:\n  templates_dir: " + broken + "\n", wantErr: "notify.templates_dir: template " + filepath.Join(broken, "dsn.ja.html")},
		{name: "misnamed template names the file", yaml: "notify:\n  templates_dir: " + misnamed + "\n", wantErr: filepath.Join(misnamed, "code.en.subj")},
		{name: "unknown key", yaml: "notify:\n  form: a@corp.example\n", wantErr: `unknown key "notify.form"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(strings.NewReader(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}
