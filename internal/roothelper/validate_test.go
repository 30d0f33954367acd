package roothelper

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/paths"
)

func TestValidateNames(t *testing.T) {
	tests := []struct {
		name      string
		bridgeOK  bool
		tapOK     bool
		rationale string
	}{
		{"banger0", true, false, "default bridge"},
		{"banger", true, false, "bare prefix"},
		{"banger-old-net1", true, false, "15 chars, the IFNAMSIZ limit"},
		{"banger-old-net12", false, false, "16 chars"},
		{"bgtap1", false, true, "shortest tap"},
		{"bgtap0123456789", false, true, "15 chars"},
		{"bgtap01234567890", false, false, "16 chars"},
		{"bgtap", false, false, "prefix without suffix"},
		{"bgtap-1", false, false, "dash not allowed in taps"},
		{"", false, false, "empty"},
		{"eth0", false, false, "no prefix"},
		{"br-fc", false, false, "the reference's name, not ours"},
		{"tap0", false, false, "no prefix"},
		{"xbanger0", false, false, "prefix not at start"},
		{"-banger0", false, false, "leading dash"},
		{"Banger0", false, false, "uppercase"},
		{"BGTAP1", false, false, "uppercase"},
		{"bgtapA", false, false, "uppercase suffix"},
		{"banger/0", false, false, "slash"},
		{"bgtap1/../eth0", false, false, "traversal"},
		{"..", false, false, "dot-dot"},
		{"banger..", false, false, "dots"},
		{"bgtap.1", false, false, "dot"},
		{"banger 0", false, false, "space"},
		{"bgtap1 ", false, false, "trailing space"},
		{"bgtap1\n", false, false, "trailing newline"},
		{"banger0\nbgtap1", false, false, "embedded newline"},
		{"bgtap1\x00", false, false, "NUL"},
		{"bangeré", false, false, "unicode"},
		{"bgtap١", false, false, "unicode digit"},
		{"bgtap1;rm", false, false, "shell metacharacter"},
		{"banger$(id)", false, false, "command substitution"},
		{strings.Repeat("a", 64), false, false, "64 chars"},
		{"banger" + strings.Repeat("0", 64), false, false, "long bridge"},
		{"bgtap" + strings.Repeat("0", 64), false, false, "long tap"},
	}
	for _, tt := range tests {
		t.Run(tt.rationale+"/"+tt.name, func(t *testing.T) {
			for _, c := range []struct {
				kind string
				err  error
				ok   bool
			}{
				{"bridge", ValidateBridge(tt.name), tt.bridgeOK},
				{"tap", ValidateTap(tt.name), tt.tapOK},
			} {
				if (c.err == nil) != c.ok {
					t.Errorf("Validate%s(%q) = %v, want ok=%v", c.kind, tt.name, c.err, c.ok)
				}
				if c.err != nil && !errors.Is(c.err, api.ErrBadRequest) {
					t.Errorf("Validate%s(%q) error %v is not bad_request", c.kind, tt.name, c.err)
				}
			}
		})
	}
}

func TestValidateGuestIP(t *testing.T) {
	cidr := netip.MustParsePrefix("172.16.0.1/24")
	tests := []struct {
		ip   string
		want string // "" = accepted, else a fragment of the error
	}{
		{"172.16.0.2", ""},
		{"172.16.0.254", ""},
		{"172.16.0.100", ""},
		{"172.16.0.0", "network address"},
		{"172.16.0.255", "broadcast"},
		{"172.16.0.1", "bridge's own"},
		{"172.16.1.2", "outside"},
		{"172.15.255.255", "outside"},
		{"10.0.0.2", "outside"},
		{"8.8.8.8", "outside"},
		{"127.0.0.1", "outside"},
		{"0.0.0.0", "outside"},
		{"255.255.255.255", "outside"},
		{"::ffff:172.16.0.2", "IPv4"},
		{"fd00::2", "IPv4"},
		{"::1", "IPv4"},
		{"fe80::1%eth0", "IPv4"},
		{"", "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			err := ValidateGuestIP(cidr, ip)
			checkErr(t, err, tt.want)
		})
	}
	t.Run("other prefix lengths", func(t *testing.T) {
		for _, tt := range []struct {
			cidr, ip, want string
		}{
			{"10.200.0.1/16", "10.200.255.254", ""},
			{"10.200.0.1/16", "10.200.255.255", "broadcast"},
			{"10.200.0.1/16", "10.201.0.2", "outside"},
			{"192.168.7.9/30", "192.168.7.10", ""},
			{"192.168.7.9/30", "192.168.7.11", "broadcast"},
			{"192.168.7.9/30", "192.168.7.8", "network"},
			{"192.168.7.9/30", "192.168.7.9", "bridge's own"},
		} {
			checkErr(t, ValidateGuestIP(netip.MustParsePrefix(tt.cidr), netip.MustParseAddr(tt.ip)), tt.want)
		}
	})
}

func TestValidateCIDR(t *testing.T) {
	for _, tt := range []struct {
		cidr string
		want string
	}{
		{"172.16.0.1/24", ""},
		{"10.0.0.1/8", ""},
		{"192.168.0.1/30", ""},
		{"172.16.0.0/24", "network or broadcast"},
		{"172.16.0.255/24", "network or broadcast"},
		{"172.16.0.1/31", "between 8 and 30"},
		{"172.16.0.1/32", "between 8 and 30"},
		{"10.0.0.1/7", "between 8 and 30"},
		{"fd00::1/64", "IPv4"},
	} {
		t.Run(tt.cidr, func(t *testing.T) {
			checkErr(t, validateCIDR(netip.MustParsePrefix(tt.cidr)), tt.want)
		})
	}
	checkErr(t, validateCIDR(netip.Prefix{}), "IPv4")
}

func TestValidateManagedPath(t *testing.T) {
	base := t.TempDir()
	state := filepath.Join(base, "state")
	cache := filepath.Join(base, "cache")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{state, cache, outside, filepath.Join(state, "vms", "a")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(state, "vms", "a", "disk.ext4"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, outside, filepath.Join(state, "vms", "evil"))                 // dir link leading out
	mustSymlink(t, filepath.Join(state, "vms", "a"), filepath.Join(state, "in")) // link staying inside
	mustSymlink(t, filepath.Join(state, "file"), filepath.Join(state, "vms", "a", "link.ext4"))
	mustSymlink(t, filepath.Join(base, "nowhere"), filepath.Join(state, "dangling"))
	linkedRoot := filepath.Join(base, "linked-root")
	mustSymlink(t, state, linkedRoot)
	fileRoot := filepath.Join(base, "file-root")
	if err := os.WriteFile(fileRoot, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	roots := []string{state, cache}

	tests := []struct {
		name  string
		path  string
		roots []string
		want  string
	}{
		{"existing file", filepath.Join(state, "vms", "a", "disk.ext4"), roots, ""},
		{"existing dir", filepath.Join(state, "vms", "a"), roots, ""},
		{"not yet created", filepath.Join(state, "vms", "b", "disk.ext4"), roots, ""},
		{"second root", filepath.Join(cache, "x"), roots, ""},
		{"root itself", state, roots, "not inside"},
		{"relative", "state/vms/a", roots, "not absolute"},
		{"dot relative", "./vms", roots, "not absolute"},
		{"empty", "", roots, "empty"},
		{"dot-dot escaping", state + "/../outside/x", roots, "not in clean form"},
		{"dot-dot inside", state + "/vms/../vms/a", roots, "not in clean form"},
		{"trailing slash", state + "/vms/", roots, "not in clean form"},
		{"double slash", state + "//vms", roots, "not in clean form"},
		{"dot component", state + "/./vms", roots, "not in clean form"},
		{"NUL", state + "/vms\x00/a", roots, "NUL"},
		{"outside roots", filepath.Join(outside, "x"), roots, "not inside"},
		{"sibling with root as prefix", state + "-evil/x", roots, "not inside"},
		{"etc", "/etc/shadow", roots, "not inside"},
		{"slash", "/", roots, "not inside"},
		{"symlink dir leading out", filepath.Join(state, "vms", "evil", "x"), roots, "is a symlink"},
		{"symlink dir as leaf", filepath.Join(state, "vms", "evil"), roots, "is a symlink"},
		{"symlink staying inside", filepath.Join(state, "in", "disk.ext4"), roots, "is a symlink"},
		{"symlink leaf file", filepath.Join(state, "vms", "a", "link.ext4"), roots, "is a symlink"},
		{"dangling symlink", filepath.Join(state, "dangling"), roots, "is a symlink"},
		{"through a file", filepath.Join(state, "file", "x"), roots, "not a directory"},
		{"root is a symlink", filepath.Join(linkedRoot, "vms", "a"), []string{linkedRoot}, "is a symlink"},
		{"root is a file", filepath.Join(fileRoot, "x"), []string{fileRoot}, "not a directory"},
		{"root missing", filepath.Join(base, "missing", "x"), []string{filepath.Join(base, "missing")}, "no such file"},
		{"relative root ignored", "/x/y", []string{"x"}, "not inside"},
		{"no roots", filepath.Join(state, "x"), nil, "not inside"},
		{"slash root ignored", "/etc/passwd", []string{"/"}, "not inside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateManagedPath(tt.path, tt.roots...)
			checkErr(t, err, tt.want)
			if err != nil && !errors.Is(err, api.ErrBadRequest) {
				t.Errorf("error %v is not bad_request", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	good := testConfig(t)
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"good", func(*Config) {}, ""},
		{"negative uid", func(c *Config) { c.OwnerUID = -1 }, "negative"},
		{"bad bridge", func(c *Config) { c.Bridge = "br0" }, "bridge name"},
		{"empty bridge", func(c *Config) { c.Bridge = "" }, "bridge name"},
		{"ipv6 cidr", func(c *Config) { c.CIDR = netip.MustParsePrefix("fd00::1/64") }, "IPv4"},
		{"relative state dir", func(c *Config) { c.Layout.StateDir = "state" }, "state dir"},
		{"missing helper dir", func(c *Config) { c.Layout.HelperDir = "" }, "helper dir"},
		{"unclean runtime dir", func(c *Config) { c.Layout.RuntimeDir = "/run/banger/" }, "runtime dir"},
		{"relative netns", func(c *Config) { c.NetNS = "netns" }, "netns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.change(&c)
			checkErr(t, c.validate(), tt.want)
		})
	}
}

func TestNewRefusesNonNamespace(t *testing.T) {
	cfg := testConfig(t)
	cfg.NetNS = filepath.Join(t.TempDir(), "not-a-netns")
	if err := os.WriteFile(cfg.NetNS, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(cfg)
	checkErr(t, err, "not a network namespace")
}

// testConfig is a valid configuration over temporary directories, in the
// helper's own namespace: use it only where no operation reaches the
// network (validation failures, decoding).
func testConfig(t *testing.T) Config {
	t.Helper()
	base := t.TempDir()
	l := paths.Layout{
		StateDir:   filepath.Join(base, "state"),
		CacheDir:   filepath.Join(base, "cache"),
		RuntimeDir: filepath.Join(base, "run"),
		HelperDir:  filepath.Join(base, "helper"),
		EtcDir:     filepath.Join(base, "etc"),
		LibDir:     filepath.Join(base, "lib"),
	}
	for _, d := range []string{l.StateDir, l.CacheDir, l.RuntimeDir, l.HelperDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return Config{
		OwnerUID: 4242,
		OwnerGID: 4243,
		Layout:   l,
		Bridge:   "banger-t0",
		CIDR:     netip.MustParsePrefix("172.16.0.1/24"),
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Errorf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("error %q does not contain %q", err, want)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
