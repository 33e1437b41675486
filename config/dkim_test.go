package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/attachgate/attachgate/dkim"
)

func TestParseDKIM(t *testing.T) {
	pemData, _, err := dkim.GenerateKey(dkim.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "corp.example.pem")
	if err := os.WriteFile(key, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse(strings.NewReader(fmt.Sprintf("dkim:\n  - domain: corp.example\n    selector: s1\n    key_file: %q\n", key)))
	if err != nil {
		t.Fatal(err)
	}
	if c.DKIMKeys().Len() != 1 || c.DKIMKeys().For("corp.example") == nil {
		t.Fatal("the dkim entry did not load its key")
	}

	for _, tt := range []struct{ name, yaml, want string }{
		{"unknown key", "dkim:\n  - domain: corp.example\n    selektor: s1\n", `unknown key "dkim[].selektor"`},
		{"missing key file", "dkim:\n  - domain: corp.example\n    selector: s1\n    key_file: /nonexistent/k.pem\n", "dkim[0].key_file"},
		{"no selector", fmt.Sprintf("dkim:\n  - domain: corp.example\n    key_file: %q\n", key), "dkim[0].selector"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
