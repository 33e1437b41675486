package pipeline

import (
	"bufio"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

func TestCheckTenant(t *testing.T) {
	const ours, theirs = "72f988bf-86f1-41af-91ab-2d7cd011db47", "0b7e2f61-5c4d-4f0e-9a3b-8d2c1e6f4a90"
	tenants := []string{ours, "11111111-2222-3333-4444-555555555555"}
	tests := []struct {
		name, header, want string // want: "" relays, else a part of the reason
	}{
		{"ours", "X-MS-Exchange-CrossTenant-Id: " + ours + "\r\n", ""},
		{"ours, upper case, field name lower case", "x-ms-exchange-crosstenant-id: " + strings.ToUpper(ours) + "\r\n", ""},
		{"ours, folded", "X-MS-Exchange-CrossTenant-Id:\r\n " + ours + "\r\n", ""},
		{"second configured tenant", "X-MS-Exchange-CrossTenant-Id: 11111111-2222-3333-4444-555555555555\r\n", ""},
		{"another tenant", "X-MS-Exchange-CrossTenant-Id: " + theirs + "\r\n", "is not configured"},
		{"missing", "Subject: x\r\n", "no X-MS-Exchange-CrossTenant-Id"},
		{"empty", "X-MS-Exchange-CrossTenant-Id: \r\n", "is not configured"},
		{"two", "X-MS-Exchange-CrossTenant-Id: " + ours + "\r\nX-MS-Exchange-CrossTenant-Id: " + ours + "\r\n", "2 X-MS-Exchange-CrossTenant-Id fields"},
		{"two values in one field", "X-MS-Exchange-CrossTenant-Id: " + ours + ", " + theirs + "\r\n", "is not configured"},
		{"other tenant header only", "X-MS-Exchange-CrossTenant-AuthAs: Internal\r\nX-MS-Exchange-CrossTenant-Id: " + theirs + "\r\n", "is not configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(tt.header + "\r\n")))
			if err != nil {
				t.Fatal(err)
			}
			got := checkTenant(h, tenants)
			if tt.want == "" && got != "" {
				t.Fatalf("refused: %s", got)
			}
			if tt.want != "" && !strings.Contains(got, tt.want) {
				t.Fatalf("reason %q, want it to contain %q", got, tt.want)
			}
		})
	}
}
