package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestMicrosoft365Validation(t *testing.T) {
	const guid = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	tests := []struct {
		name, yaml, want string
	}{
		{"networks without tenants", "smtp:\n  microsoft365:\n    networks: [\"40.92.0.0/15\"]\n",
			"smtp.microsoft365.tenant_ids: required with smtp.microsoft365.networks"},
		{"tenants without networks", "smtp:\n  microsoft365:\n    tenant_ids: [\"" + guid + "\"]\n",
			"smtp.microsoft365.networks: required with smtp.microsoft365.tenant_ids"},
		{"bad network", "smtp:\n  microsoft365:\n    networks: [\"outlook.com\"]\n    tenant_ids: [\"" + guid + "\"]\n",
			`smtp.microsoft365.networks: "outlook.com" is not a network`},
		{"bad tenant", "smtp:\n  microsoft365:\n    networks: [\"40.92.0.0/15\"]\n    tenant_ids: [\"contoso.onmicrosoft.com\"]\n",
			`smtp.microsoft365.tenant_ids: "contoso.onmicrosoft.com" is not a tenant ID`},
		{"tenant in braces", "smtp:\n  microsoft365:\n    networks: [\"40.92.0.0/15\"]\n    tenant_ids: [\"{" + guid + "}\"]\n",
			`smtp.microsoft365.tenant_ids: "{` + guid + `}" is not a tenant ID`},
		{"network also trusted", "smtp:\n  trusted_networks: [\"127.0.0.0/8\", \"40.92.0.0/15\"]\n  microsoft365:\n    networks: [\"40.92.0.0/15\"]\n    tenant_ids: [\"" + guid + "\"]\n",
			`smtp.microsoft365.networks: "40.92.0.0/15" overlaps smtp.trusted_networks entry 40.92.0.0/15`},
		{"network inside a trusted one", "smtp:\n  trusted_networks: [\"40.0.0.0/8\"]\n  microsoft365:\n    networks: [\"40.92.0.0/15\"]\n    tenant_ids: [\"" + guid + "\"]\n",
			`smtp.microsoft365.networks: "40.92.0.0/15" overlaps smtp.trusted_networks entry 40.0.0.0/8`},
		{"unknown key", "smtp:\n  microsoft365:\n    tenants: [\"" + guid + "\"]\n", `unknown key "smtp.microsoft365.tenants"`},
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

func TestMicrosoft365Parsed(t *testing.T) {
	c, err := Parse(strings.NewReader(`
smtp:
  microsoft365:
    networks: ["40.92.0.0/15", "52.100.0.0/14", "2a01:111:f400::/48", "40.107.0.1"]
    tenant_ids: ["72F988BF-86F1-41AF-91AB-2D7CD011DB47"]
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("40.92.0.0/15"), netip.MustParsePrefix("52.100.0.0/14"),
		netip.MustParsePrefix("2a01:111:f400::/48"), netip.MustParsePrefix("40.107.0.1/32")}
	if got := c.SMTP.Microsoft365.ParsedNetworks(); !slices.Equal(got, want) {
		t.Fatalf("networks %v, want %v", got, want)
	}
	if got := c.SMTP.Microsoft365.Tenants(); !slices.Equal(got, []string{"72f988bf-86f1-41af-91ab-2d7cd011db47"}) {
		t.Fatalf("tenants %v, want the GUID in lower case", got)
	}
	d, err := Parse(strings.NewReader("smtp:\n  hostname: gw.example.com\n"))
	if err != nil {
		t.Fatal(err)
	}
	if d.SMTP.Microsoft365.ParsedNetworks() != nil || d.SMTP.Microsoft365.Tenants() != nil {
		t.Fatal("microsoft365 set without being configured")
	}
}
