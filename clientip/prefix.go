package clientip

import "net/netip"

// Network widths a single client is assumed to control: an IPv4 address
// (NAT puts whole households behind one), and an IPv6 /64, the smallest
// prefix a home line or a server is handed (SLAAC needs it), so an attacker
// can rotate through 2^64 addresses of it for free.
const (
	ClientBitsIPv4 = 32
	ClientBitsIPv6 = 64
)

// ClientPrefix returns the network that limits per client must count as
// one client: addr's /32 for IPv4 (IPv4-mapped IPv6 included), its /64 for
// IPv6. Zones are dropped. An invalid addr gives the zero Prefix.
func ClientPrefix(addr netip.Addr) netip.Prefix {
	if !addr.IsValid() {
		return netip.Prefix{}
	}
	addr = addr.Unmap().WithZone("")
	bits := ClientBitsIPv6
	if addr.Is4() {
		bits = ClientBitsIPv4
	}
	p, err := addr.Prefix(bits)
	if err != nil { // cannot happen: bits fits the family
		return netip.PrefixFrom(addr, addr.BitLen())
	}
	return p
}
