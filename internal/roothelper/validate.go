package roothelper

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/banger/banger/internal/api"
)

// Names are matched, never normalised: anything else is refused. Both rules
// keep names within IFNAMSIZ-1 (15) bytes and out of other tools' prefixes.
var (
	bridgeRule = regexp.MustCompile(`^banger[a-z0-9-]{0,9}$`)
	tapRule    = regexp.MustCompile(`^bgtap[a-z0-9]{1,10}$`)
)

// ValidateBridge checks that name is a bridge name banger may manage.
func ValidateBridge(name string) error {
	if !bridgeRule.MatchString(name) {
		return api.Errorf(api.CodeBadRequest, "bridge name %q is not a banger bridge name (%s)", name, bridgeRule)
	}
	return nil
}

// ValidateTap checks that name is a tap name banger may manage.
func ValidateTap(name string) error {
	if !tapRule.MatchString(name) {
		return api.Errorf(api.CodeBadRequest, "tap name %q is not a banger tap name (%s)", name, tapRule)
	}
	return nil
}

// validateCIDR checks the bridge prefix from the configuration: an IPv4
// host address with room for at least one guest beside it.
func validateCIDR(cidr netip.Prefix) error {
	if !cidr.IsValid() || !cidr.Addr().Is4() {
		return fmt.Errorf("bridge cidr %q: must be an IPv4 address with a prefix length, e.g. 172.16.0.1/24", cidr)
	}
	if b := cidr.Bits(); b < 8 || b > 30 {
		return fmt.Errorf("bridge cidr %s: prefix length must be between 8 and 30", cidr)
	}
	if a := cidr.Addr(); a == cidr.Masked().Addr() || a == broadcast(cidr) {
		return fmt.Errorf("bridge cidr %s: the bridge address cannot be the network or broadcast address", cidr)
	}
	return nil
}

// ValidateGuestIP checks that ip is a guest address banger may route: inside
// the bridge subnet and neither its network, broadcast nor bridge address.
func ValidateGuestIP(cidr netip.Prefix, ip netip.Addr) error {
	if !ip.IsValid() {
		return api.Errorf(api.CodeBadRequest, "guest ip is missing")
	}
	// Is4 is false for IPv6, including IPv4-mapped forms such as ::ffff:a.b.c.d.
	if !ip.Is4() {
		return api.Errorf(api.CodeBadRequest, "guest ip %s: only IPv4 guests are supported", ip)
	}
	if !cidr.Masked().Contains(ip) {
		return api.Errorf(api.CodeBadRequest, "guest ip %s is outside the bridge subnet %s", ip, cidr.Masked())
	}
	switch ip {
	case cidr.Masked().Addr():
		return api.Errorf(api.CodeBadRequest, "guest ip %s is the network address of %s", ip, cidr.Masked())
	case broadcast(cidr):
		return api.Errorf(api.CodeBadRequest, "guest ip %s is the broadcast address of %s", ip, cidr.Masked())
	case cidr.Addr():
		return api.Errorf(api.CodeBadRequest, "guest ip %s is the bridge's own address", ip)
	}
	return nil
}

func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	a[0] |= byte(host >> 24)
	a[1] |= byte(host >> 16)
	a[2] |= byte(host >> 8)
	a[3] |= byte(host)
	return netip.AddrFrom4(a)
}

// ValidateManagedPath checks that path is strictly inside one of roots
// without passing through a symlink: it must be absolute and clean, the root
// must be a real directory, and every existing component below it is
// Lstat'ed. Components that do not exist yet are allowed (the operation may
// create them). This is a gate, not a guarantee: an operation that then
// opens the path must still use O_NOFOLLOW/openat-style calls, since the
// tree can change after the check.
func ValidateManagedPath(path string, roots ...string) error {
	bad := func(format string, args ...any) error {
		return api.Errorf(api.CodeBadRequest, "path %q: "+format, append([]any{path}, args...)...)
	}
	switch {
	case path == "":
		return bad("empty")
	case strings.ContainsRune(path, 0):
		return bad("contains a NUL byte")
	case !filepath.IsAbs(path):
		return bad("not absolute")
	case filepath.Clean(path) != path:
		return bad("not in clean form")
	}
	for _, c := range strings.Split(path, "/") {
		if c == ".." {
			return bad("contains '..'")
		}
	}
	for _, root := range roots {
		if root == "" || !filepath.IsAbs(root) || filepath.Clean(root) != root || root == "/" {
			continue
		}
		rel, ok := strings.CutPrefix(path, root+"/")
		if !ok {
			continue
		}
		fi, err := os.Lstat(root)
		if err != nil {
			return bad("root %s: %v", root, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return bad("root %s is a symlink", root)
		}
		if !fi.IsDir() {
			return bad("root %s is not a directory", root)
		}
		cur := root
		parts := strings.Split(rel, "/")
		for i, c := range parts {
			cur += "/" + c
			fi, err := os.Lstat(cur)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return bad("%v", err)
			}
			if fi.Mode()&fs.ModeSymlink != 0 {
				return bad("%s is a symlink", cur)
			}
			if i < len(parts)-1 && !fi.IsDir() {
				return bad("%s is not a directory", cur)
			}
		}
		return nil
	}
	return bad("not inside banger's directories (%s)", strings.Join(roots, ", "))
}
