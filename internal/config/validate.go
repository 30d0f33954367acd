package config

import (
	"fmt"
	"io/fs"
	"net/netip"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/banger/banger/internal/api"
)

// ValidDNSLabel checks a name that becomes a DNS label (VM and image names):
// 1-63 of a-z, 0-9 and '-', not starting or ending with '-'. The error
// carries api.CodeBadRequest.
func ValidDNSLabel(s string) error {
	ok := len(s) >= 1 && len(s) <= 63 && s[0] != '-' && s[len(s)-1] != '-'
	for i := 0; ok && i < len(s); i++ {
		ok = lowerDigit(s[i]) || s[i] == '-'
	}
	if !ok {
		return api.Errorf(api.CodeBadRequest, "%q is not a valid name: use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'", s)
	}
	return nil
}

// ValidBridgeName checks a bridge name: "banger" and up to 9 more of a-z,
// 0-9 and '-', which keeps it within the kernel's 15-byte limit and inside
// the prefix the root helper will touch. The error carries api.CodeBadRequest.
func ValidBridgeName(s string) error {
	rest, ok := strings.CutPrefix(s, "banger")
	ok = ok && len(rest) <= 9
	for i := 0; ok && i < len(rest); i++ {
		ok = lowerDigit(rest[i]) || rest[i] == '-'
	}
	if !ok {
		return api.Errorf(api.CodeBadRequest, "%q is not a valid bridge name: use \"banger\" followed by up to 9 characters of a-z, 0-9 and '-'", s)
	}
	return nil
}

func lowerDigit(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func validKernelName(s string) error {
	ok := len(s) >= 1 && len(s) <= 63 && lowerDigit(s[0])
	for i := 1; ok && i < len(s); i++ {
		ok = lowerDigit(s[i]) || s[i] == '.' || s[i] == '-'
	}
	if !ok {
		return fmt.Errorf("must be 1-63 characters of a-z, 0-9, '.' and '-', starting with a letter or digit (got %q)", s)
	}
	return nil
}

func oneOf(s string, allowed ...string) error {
	for _, a := range allowed {
		if s == a {
			return nil
		}
	}
	return fmt.Errorf("must be one of %s (got %q)", strings.Join(allowed, ", "), s)
}

func validLogLevel(s string) error { return oneOf(s, "debug", "info", "warn", "error") }

// hostPath accepts an absolute path or one starting with ~/, and returns it
// cleaned with ~/ expanded against home.
func hostPath(p, home string) (string, error) {
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("must not contain a NUL byte")
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(home, rest), nil
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	return "", fmt.Errorf("must be an absolute path or start with ~/ (got %q)", p)
}

// guestPath accepts ~/... or /root/... (the guest user is root) without ".."
// components, and returns the absolute guest path.
func guestPath(p string) (string, error) {
	rest, ok := strings.CutPrefix(p, "~/")
	if !ok {
		rest, ok = strings.CutPrefix(p, "/root/")
	}
	if !ok {
		return "", fmt.Errorf("must start with ~/ or /root/ (got %q)", p)
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("must not contain a NUL byte")
	}
	for _, part := range strings.Split(rest, "/") {
		if part == ".." {
			return "", fmt.Errorf("must not contain \"..\" (got %q)", p)
		}
	}
	return path.Join("/root", rest), nil
}

func parseMode(s string) (fs.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || len(s) > 4 || n > 0o777 {
		return 0, fmt.Errorf("must be an octal mode from 0 to 0777 such as \"0600\" (got %q)", s)
	}
	return fs.FileMode(n), nil
}

const minBootTimeout = 5 * time.Second

func parseBootTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("must be a duration such as \"180s\" or \"3m\" (got %q)", s)
	}
	if d < minBootTimeout {
		return 0, fmt.Errorf("must be at least %v (got %v)", minBootTimeout, d)
	}
	return d, nil
}

// privateRanges are where the bridge subnet may live: RFC 1918 and the
// carrier-grade NAT range, so it never shadows a public address.
func privateRanges() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("100.64.0.0/10"),
	}
}

// parseCIDR reads the bridge address with its prefix length. The address is
// kept (not masked): it is the bridge's own address and the guests' gateway.
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("must be the bridge address with a prefix length such as \"172.16.0.1/24\" (got %q)", s)
	}
	a := p.Addr()
	if !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("must be an IPv4 address with a prefix length such as \"172.16.0.1/24\" (got %q)", s)
	}
	private := false
	for _, r := range privateRanges() {
		private = private || r.Contains(a)
	}
	if !private {
		return netip.Prefix{}, fmt.Errorf("must be inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10 (got %q)", s)
	}
	if p.Bits() < 16 || p.Bits() > 29 {
		return netip.Prefix{}, fmt.Errorf("prefix length must be between 16 and 29 (got %q)", s)
	}
	if a == p.Masked().Addr() {
		return netip.Prefix{}, fmt.Errorf("%v is the network address of its subnet; use a host address such as %v/%d (got %q)", a, a.Next(), p.Bits(), s)
	}
	if a == broadcast(p) {
		return netip.Prefix{}, fmt.Errorf("%v is the broadcast address of its subnet; use a host address such as %v/%d (got %q)", a, p.Masked().Addr().Next(), p.Bits(), s)
	}
	return p, nil
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := ^uint32(0) >> p.Bits()
	b[0] |= byte(host >> 24)
	b[1] |= byte(host >> 16)
	b[2] |= byte(host >> 8)
	b[3] |= byte(host)
	return netip.AddrFrom4(b)
}

func parseDNSAddr(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || !ap.Addr().IsLoopback() || ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("must be a loopback IP:port such as \"127.0.0.1:42069\" (got %q)", s)
	}
	return ap, nil
}

// parseUpstream reads "IP" (port 53) or "IP:port" ("[v6]:port").
func parseUpstream(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil {
			return netip.AddrPort{}, fmt.Errorf("must be an IP or IP:port such as \"1.1.1.1\" or \"[2606:4700::1111]:53\" (got %q)", s)
		}
		ap = netip.AddrPortFrom(a, 53)
	}
	if ap.Addr().IsUnspecified() || ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("must be a resolver's address with a non-zero port (got %q)", s)
	}
	return ap, nil
}
