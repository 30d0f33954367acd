package host

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SystemdIsPID1 reports whether systemd manages this host, so units can be
// installed and started (containers and CI often lack it).
func SystemdIsPID1() bool { return systemdIsPID1("/") }

func systemdIsPID1(root string) bool {
	comm, err := os.ReadFile(filepath.Join(root, "proc/1/comm"))
	if err != nil || strings.TrimSpace(string(comm)) != "systemd" {
		return false
	}
	fi, err := os.Stat(filepath.Join(root, "run/systemd/system"))
	return err == nil && fi.IsDir()
}

// ResolvedRunning reports whether systemd-resolved is up, which decides
// whether the .vm zone is routed through resolvectl.
func ResolvedRunning() bool { return resolvedRunning("/") }

func resolvedRunning(root string) bool {
	dir := filepath.Join(root, "run/systemd/resolve")
	if fi, err := os.Stat(filepath.Join(dir, "stub-resolv.conf")); err == nil && fi.Mode().IsRegular() {
		return true
	}
	fi, err := os.Stat(filepath.Join(dir, "io.systemd.Resolve"))
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

// Arch names the architecture banger was built for and the one the kernel
// reports, e.g. "amd64 (x86_64)"; they differ for a 386 build on x86_64.
func Arch() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return runtime.GOARCH
	}
	return fmt.Sprintf("%s (%s)", runtime.GOARCH, unix.ByteSliceToString(u.Machine[:]))
}

// UDPFree returns nil when addr ("127.0.0.1:42069") can be bound for UDP.
func UDPFree(addr string) error {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("udp %s not free: %w", addr, err)
	}
	return c.Close()
}

// TCPFree returns nil when addr can be bound for TCP.
func TCPFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("tcp %s not free: %w", addr, err)
	}
	return l.Close()
}

// Memory returns the host's total RAM in bytes, 0 if unknown.
func Memory() (total uint64) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	total, _ = memTotal(f)
	return total
}

func memTotal(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || key != "MemTotal" {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse meminfo: MemTotal %q", strings.TrimSpace(val))
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse meminfo: %w", err)
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("parse meminfo: %w", err)
	}
	return 0, fmt.Errorf("parse meminfo: no MemTotal")
}

// HasTunDevice reports whether /dev/net/tun exists, which taps need.
func HasTunDevice() bool { return isCharDevice("/dev/net/tun") }

func isCharDevice(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
