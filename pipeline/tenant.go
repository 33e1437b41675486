package pipeline

import (
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// crossTenantField is the header field Microsoft 365 stamps on mail leaving
// a tenant, naming that tenant; Microsoft removes one the sender wrote.
const crossTenantField = "X-MS-Exchange-CrossTenant-Id"

// checkTenant is the check a message from smtp.microsoft365.networks must
// pass: exactly one X-MS-Exchange-CrossTenant-Id in its header, naming one
// of tenants (lower-case GUIDs; the field is compared case-insensitively).
// It returns "" when the message may be relayed, else why not (for the
// audit log's reason).
func checkTenant(h textproto.Header, tenants []string) string {
	values := h.Values(crossTenantField)
	switch len(values) {
	case 0:
		return "microsoft365: no " + crossTenantField
	case 1:
	default:
		return fmt.Sprintf("microsoft365: %d %s fields", len(values), crossTenantField)
	}
	id := strings.ToLower(strings.TrimSpace(values[0]))
	if !slices.Contains(tenants, id) {
		if len(id) > 64 {
			id = id[:64] + "..."
		}
		return fmt.Sprintf("microsoft365: tenant %q is not configured", id)
	}
	return ""
}
