package smtpd

import (
	"bytes"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/attachgate/attachgate/audit"
	"github.com/attachgate/attachgate/smtptest"
)

const (
	ourTenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	otherTenant = "0b7e2f61-5c4d-4f0e-9a3b-8d2c1e6f4a90"
)

// withMicrosoft365 makes 127.0.0.2 "Microsoft 365" (its sending ranges)
// and ourTenant the configured tenant; 127.0.0.1 stays trusted.
func withMicrosoft365() gatewayOption {
	return withOptions(func(o *Options) {
		o.Trusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		o.Microsoft365Networks = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
		o.Microsoft365Tenants = []string{ourTenant}
	})
}

// m365Mail is a message with an attachment and the given
// X-MS-Exchange-CrossTenant-Id fields, as Microsoft 365 hands it over.
func m365Mail(tenants ...string) []byte {
	var hdr bytes.Buffer
	for _, t := range tenants {
		hdr.WriteString("X-MS-Exchange-CrossTenant-Id: " + t + "\r\n")
	}
	return append(hdr.Bytes(), mailWithAttachment("report", "see attached", "q3.xlsx",
		bytes.Repeat([]byte("quarterly figures "), 4000))...)
}

// sendFrom runs one transaction over a raw socket from local and returns
// the replies to MAIL and to the end of DATA ("" when MAIL was refused).
func sendFrom(t *testing.T, addr, local string, msg []byte) (mail, data string) {
	t.Helper()
	c := dialRawFrom(t, addr, local)
	c.reply()
	c.expect("EHLO mail.protection.outlook.test", "250")
	mail = c.cmd("MAIL FROM:<alice@example.com>")
	if !strings.HasPrefix(mail, "250") {
		return mail, ""
	}
	c.expect("RCPT TO:<bob@example.net>", "250")
	c.expect("DATA", "354")
	c.send(string(msg) + ".\r\n")
	data = c.reply()
	c.expect("QUIT", "221")
	return mail, data
}

// TestMicrosoft365OnlyConfiguredTenantRelays: Microsoft 365 sends for all
// its customers from the same addresses. A client there may relay only
// mail Microsoft stamped with our tenant; another tenant's mail (the open
// relay the old "put Microsoft's ranges into trusted_networks" recipe
// made), mail without the stamp or with two stamps is refused at the end
// of DATA, and nothing of it reaches the next hop or stays stored.
func TestMicrosoft365OnlyConfiguredTenantRelays(t *testing.T) {
	tests := []struct {
		name    string
		tenants []string
		relayed bool
	}{
		{"our tenant", []string{ourTenant}, true},
		{"our tenant, upper case", []string{strings.ToUpper(ourTenant)}, true},
		{"another tenant", []string{otherTenant}, false},
		{"no tenant stamp", nil, false},
		{"two stamps, ours and another", []string{otherTenant, ourTenant}, false},
		{"two stamps, both ours", []string{ourTenant, ourTenant}, false},
		{"our tenant as a prefix", []string{ourTenant + "0"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hop := smtptest.NewServer(t, smtptest.Behaviour{})
			gw := startGateway(t, hop.Addr, withMicrosoft365())
			mail, data := sendFrom(t, gw.smtpAddr, "127.0.0.2", m365Mail(tt.tenants...))
			if !strings.HasPrefix(mail, "250") {
				t.Fatalf("MAIL from the Microsoft 365 network: %q, want 250", mail)
			}
			blobs := fileCount(t, filepath.Join(gw.dir, "blobs"))
			if tt.relayed {
				if !strings.HasPrefix(data, "250 ") {
					t.Fatalf("end of DATA: %q, want 250", data)
				}
				msgs := hop.Messages()
				if len(msgs) != 1 {
					t.Fatalf("next hop got %d messages, want 1", len(msgs))
				}
				mustContain(t, msgs[0].Data, "X-MS-Exchange-CrossTenant-Id: "+tt.tenants[0], "/d/")
				if blobs != 1 {
					t.Fatalf("vault holds %d blobs, want the linked attachment", blobs)
				}
				if ev := gw.events(audit.TypeMailReceived); len(ev) != 1 ||
					!strings.Contains(ev[0]["detail"].(string), "microsoft365 network 127.0.0.2/32") {
					t.Fatalf("mail.received: %v, want one naming the Microsoft 365 network", ev)
				}
				gw.assertNoLeftovers()
				return
			}
			if !strings.HasPrefix(data, "550 5.7.1 Relaying denied: message is not from a configured Microsoft 365 tenant") {
				t.Fatalf("end of DATA: %q, want 550 5.7.1 not a configured tenant", data)
			}
			if n := len(hop.Messages()); n != 0 {
				t.Fatalf("next hop got %d messages: another tenant's mail was relayed", n)
			}
			if blobs != 0 {
				t.Fatalf("vault holds %d blobs of a refused message", blobs)
			}
			var stored int
			if err := gw.store.DB().QueryRow("SELECT count(*) FROM messages").Scan(&stored); err != nil {
				t.Fatal(err)
			}
			if stored != 0 {
				t.Fatalf("store holds %d messages of a refused message", stored)
			}
			rej := gw.events(audit.TypeMailRejected)
			if len(rej) != 1 || !strings.Contains(rej[0]["reason"].(string), "microsoft365") ||
				!strings.Contains(rej[0]["reply"].(string), "550 5.7.1") {
				t.Fatalf("mail.rejected events: %v, want one with a microsoft365 reason", rej)
			}
			if ev := gw.events(audit.TypeMailReceived, audit.TypeMailRelayed); len(ev) != 0 {
				t.Fatalf("refused message on record as %v", ev)
			}
			gw.assertNoLeftovers()
		})
	}
}

// TestMicrosoft365NetworkOnly: a client outside the trusted and the
// Microsoft 365 networks is still refused at MAIL, and a trusted client
// relays without any tenant stamp.
func TestMicrosoft365NetworkOnly(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withMicrosoft365())
	if mail, _ := sendFrom(t, gw.smtpAddr, "127.0.0.3", m365Mail(ourTenant)); !strings.HasPrefix(mail, "550 5.7.1 Relaying denied") {
		t.Fatalf("MAIL from outside every network: %q, want 550 5.7.1", mail)
	}
	if _, data := sendFrom(t, gw.smtpAddr, "127.0.0.1", m365Mail()); !strings.HasPrefix(data, "250 ") {
		t.Fatalf("trusted client without a tenant stamp: %q, want 250", data)
	}
	if n := len(hop.Messages()); n != 1 {
		t.Fatalf("next hop got %d messages, want the trusted client's", n)
	}
}

// TestMicrosoft365NeedsTenants: networks without tenants let nobody in
// (config validation refuses that; the server must not fail open).
func TestMicrosoft365NeedsTenants(t *testing.T) {
	hop := smtptest.NewServer(t, smtptest.Behaviour{})
	gw := startGateway(t, hop.Addr, withMicrosoft365(), withOptions(func(o *Options) { o.Microsoft365Tenants = nil }))
	if mail, _ := sendFrom(t, gw.smtpAddr, "127.0.0.2", m365Mail(ourTenant)); !strings.HasPrefix(mail, "550 5.7.1") {
		t.Fatalf("MAIL from the Microsoft 365 network without tenants: %q, want 550 5.7.1", mail)
	}
}
