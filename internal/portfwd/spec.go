// Package portfwd forwards TCP ports of the host to ports of a guest.
package portfwd

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Spec is one -p flag: connections to Host are carried to GuestPort on the
// guest. A Host port of 0 asks for any free port.
type Spec struct {
	Host      netip.AddrPort
	GuestPort uint16
}

const specForm = "want [hostaddr:]hostport:guestport, such as 8080:80, 127.0.0.1:8080:80 or [::1]:8080:80"

// ParseSpec reads [hostaddr:]hostport:guestport. hostaddr is an IP literal
// (IPv6 in brackets) and defaults to 127.0.0.1.
func ParseSpec(s string) (Spec, error) {
	bad := func(format string, a ...any) (Spec, error) {
		return Spec{}, fmt.Errorf("-p %q: %s", s, fmt.Sprintf(format, a...))
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return bad("%s", specForm)
	}
	hostPart, guestPart := s[:i], s[i+1:]
	guest, err := parsePort(guestPart)
	if err != nil || guest == 0 {
		return bad("guest port %q is not a number from 1 to 65535", guestPart)
	}
	// Loopback by default: a forward reachable from the network has to be
	// asked for by address.
	addr := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	portPart := hostPart
	if j := strings.LastIndexByte(hostPart, ':'); j >= 0 {
		a, p := hostPart[:j], hostPart[j+1:]
		if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") {
			a = a[1 : len(a)-1]
		} else if strings.Contains(a, ":") {
			return bad("IPv6 host addresses go in brackets, such as [::1]:8080:80")
		}
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return bad("host address %q is not an IP address", a)
		}
		addr, portPart = ip.Unmap(), p
	}
	host, err := parsePort(portPart)
	if err != nil {
		return bad("host port %q is not a number from 0 to 65535 (0 picks a free port)", portPart)
	}
	return Spec{Host: netip.AddrPortFrom(addr, host), GuestPort: guest}, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" || s[0] < '0' || s[0] > '9' { // ParseUint would take "+80"
		return 0, strconv.ErrSyntax
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err
}

// String is the flag form, always with the host address.
func (s Spec) String() string {
	return s.Host.String() + ":" + strconv.Itoa(int(s.GuestPort))
}

// MarshalText stores a Spec as its flag form, for records and JSON.
func (s Spec) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the flag form.
func (s *Spec) UnmarshalText(b []byte) error {
	v, err := ParseSpec(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}
