package dns

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// SystemUpstreams returns the host's resolvers: the nameservers of
// /etc/resolv.conf, port 53. systemd-resolved's stub (127.0.0.53,
// 127.0.0.54) is replaced by the servers resolved itself uses, from
// /run/systemd/resolve/resolv.conf, when that file lists any; other
// loopback resolvers (a local dnsmasq) are kept, the daemon runs on the
// host and reaches them.
func SystemUpstreams() ([]netip.AddrPort, error) { return systemUpstreams("/") }

func systemUpstreams(root string) ([]netip.AddrPort, error) {
	conf := filepath.Join(root, "etc/resolv.conf")
	all, err := nameservers(conf)
	if err != nil {
		return nil, err
	}
	var out []netip.AddrPort
	stub := false
	for _, a := range all {
		if isResolvedStub(a.Addr()) {
			stub = true
			continue
		}
		out = append(out, a)
	}
	if stub {
		viaResolved, err := nameservers(filepath.Join(root, "run/systemd/resolve/resolv.conf"))
		viaResolved = slices.DeleteFunc(viaResolved, func(a netip.AddrPort) bool { return isResolvedStub(a.Addr()) })
		if err == nil && len(viaResolved) > 0 {
			out = append(out, viaResolved...)
		} else {
			out = all // resolved's own list is unknown: its stub still works from the host
		}
	}
	out = uniq(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("no nameserver in %s; set network.upstream_dns", conf)
	}
	return out, nil
}

func isResolvedStub(a netip.Addr) bool {
	return a == netip.AddrFrom4([4]byte{127, 0, 0, 53}) || a == netip.AddrFrom4([4]byte{127, 0, 0, 54})
}

// nameservers reads the "nameserver" lines of a resolv.conf file; lines it
// cannot parse are skipped, as the libc resolver does.
func nameservers(path string) ([]netip.AddrPort, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read resolvers: %w", err)
	}
	var out []netip.AddrPort
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || a.IsUnspecified() {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53))
	}
	return out, sc.Err()
}

func uniq(in []netip.AddrPort) []netip.AddrPort {
	var out []netip.AddrPort
	for _, a := range in {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}
