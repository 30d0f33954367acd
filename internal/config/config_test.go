package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/paths"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const home = "/home/u"

var (
	bigHost   = HostFacts{CPUs: 8, MemoryBytes: 32 * 1 << 30}
	equateNet = cmpopts.EquateComparable(netip.Prefix{}, netip.AddrPort{})
)

// files writes the non-empty docs into a temp dir and returns the paths of
// all of them, existing or not, lowest precedence first.
func files(t *testing.T, docs ...string) []string {
	t.Helper()
	dir := t.TempDir()
	var out []string
	for i, doc := range docs {
		p := filepath.Join(dir, fmt.Sprintf("config%d.toml", i))
		if doc != "" {
			if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, p)
	}
	return out
}

func noEnv(string) string { return "" }

func load(t *testing.T, docs ...string) (*Config, []string, error) {
	t.Helper()
	t.Setenv("XDG_STATE_HOME", "")
	cfgs := files(t, docs...)
	c, err := Load(LoadOptions{Files: cfgs, Home: home, Host: bigHost, Env: noEnv})
	return c, cfgs, err
}

func TestDefaults(t *testing.T) {
	c, _, err := load(t, "", "")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		LogLevel:      "info",
		DefaultImage:  "debian-bookworm",
		DefaultKernel: "debian-cloud",
		Hypervisor:    "auto",
		BootTimeout:   180 * time.Second,
		Network: Network{
			Bridge:  "banger0",
			CIDR:    netip.MustParsePrefix("172.16.0.1/24"),
			DNSAddr: netip.MustParseAddrPort("127.0.0.1:42069"),
		},
		VMDefaults: VMDefaults{
			VCPU:      Sourced[int]{Value: 2, Source: SourceHost},
			MemoryMiB: Sourced[int]{Value: 4096, Source: SourceHost},
			DiskBytes: Sourced[int64]{Value: 8 << 30, Source: SourceHost},
		},
		Origins: map[string]string{},
	}
	if diff := cmp.Diff(want, c, equateNet); diff != "" {
		t.Errorf("Load with no files (-want +got):\n%s", diff)
	}
	if got, want := c.Network.Subnet(), netip.MustParsePrefix("172.16.0.0/24"); got != want {
		t.Errorf("Subnet() = %v, want %v", got, want)
	}
	if diff := cmp.Diff(want, Default(bigHost, home), equateNet); diff != "" {
		t.Errorf("Default (-want +got):\n%s", diff)
	}
}

const everyKey = `
log_level = "debug"
default_image_name = "ubuntu-2404"
default_kernel_name = "vanilla-6.1"
ssh_key_path = "~/.ssh/id_banger"
hypervisor = "qemu"
firecracker_bin = "/opt/fc/firecracker"
jailer_bin = "~/bin/jailer"
qemu_bin = "/usr/bin/qemu-system-x86_64"
jailer_enabled = true
boot_timeout = "2m30s"

[network]
bridge = "banger-dev"
cidr = "10.42.0.1/16"
dns_addr = "[::1]:5353"
upstream_dns = ["1.1.1.1", "9.9.9.9:5353", "[2606:4700::1111]:53"]

[vm_defaults]
vcpu = 6
memory_mib = 2048
disk_size = "20GiB"

[[file_sync]]
host = "~/.gitconfig"
guest = "~/.gitconfig"
mode = "0600"

[[file_sync]]
host = "/home/u/bin/"
guest = "/root/bin"
`

func TestEveryKey(t *testing.T) {
	c, cfgs, err := load(t, everyKey)
	if err != nil {
		t.Fatal(err)
	}
	f := cfgs[0]
	want := &Config{
		LogLevel:       "debug",
		DefaultImage:   "ubuntu-2404",
		DefaultKernel:  "vanilla-6.1",
		SSHKeyPath:     "/home/u/.ssh/id_banger",
		Hypervisor:     "qemu",
		FirecrackerBin: "/opt/fc/firecracker",
		JailerBin:      "/home/u/bin/jailer",
		QEMUBin:        "/usr/bin/qemu-system-x86_64",
		JailerEnabled:  true,
		BootTimeout:    150 * time.Second,
		Network: Network{
			Bridge:  "banger-dev",
			CIDR:    netip.MustParsePrefix("10.42.0.1/16"),
			DNSAddr: netip.MustParseAddrPort("[::1]:5353"),
			UpstreamDNS: []netip.AddrPort{
				netip.MustParseAddrPort("1.1.1.1:53"),
				netip.MustParseAddrPort("9.9.9.9:5353"),
				netip.MustParseAddrPort("[2606:4700::1111]:53"),
			},
		},
		VMDefaults: VMDefaults{
			VCPU:      Sourced[int]{Value: 6, Source: SourceConfig, File: f},
			MemoryMiB: Sourced[int]{Value: 2048, Source: SourceConfig, File: f},
			DiskBytes: Sourced[int64]{Value: 20 << 30, Source: SourceConfig, File: f},
		},
		FileSync: []FileSync{
			{Host: "~/.gitconfig", HostPath: "/home/u/.gitconfig", Guest: "~/.gitconfig", GuestPath: "/root/.gitconfig", Mode: 0o600, ModeSet: true},
			{Host: "/home/u/bin/", HostPath: "/home/u/bin", Guest: "/root/bin", GuestPath: "/root/bin"},
		},
		Files:   []string{f},
		Origins: map[string]string{},
	}
	// Every documented key that holds a value was set by this file.
	for _, k := range Keys() {
		if k.Type != typeTable && !strings.HasPrefix(k.Name, "file_sync[]") {
			want.Origins[k.Name] = f
		}
	}
	if diff := cmp.Diff(want, c, equateNet); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
}

func TestKeysDocumented(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range Keys() {
		if seen[k.Name] {
			t.Errorf("key %s listed twice", k.Name)
		}
		seen[k.Name] = true
		if k.Type == "" || k.Doc == "" || (k.Default == "" && k.Type != typeTable) {
			t.Errorf("key %s: type %q, default %q, doc %q: all must be set", k.Name, k.Type, k.Default, k.Doc)
		}
		if parent, _, ok := strings.Cut(k.Name, "."); ok && !seen[strings.TrimSuffix(parent, "[]")] {
			t.Errorf("key %s is listed before its table %s", k.Name, parent)
		}
	}
}

// TestLayering sets each key in the system file only, the user file only, and
// both: the user file wins per key and Origins names the file.
func TestLayering(t *testing.T) {
	tests := []struct {
		key          string
		sys, user    string
		get          func(*Config) any
		wantS, wantU any
	}{
		{"log_level", `log_level = "warn"`, `log_level = "error"`,
			func(c *Config) any { return c.LogLevel }, "warn", "error"},
		{"default_image_name", `default_image_name = "a"`, `default_image_name = "b"`,
			func(c *Config) any { return c.DefaultImage }, "a", "b"},
		{"default_kernel_name", `default_kernel_name = "k.1"`, `default_kernel_name = "k.2"`,
			func(c *Config) any { return c.DefaultKernel }, "k.1", "k.2"},
		{"ssh_key_path", `ssh_key_path = "/etc/banger/key"`, `ssh_key_path = "~/key"`,
			func(c *Config) any { return c.SSHKeyPath }, "/etc/banger/key", "/home/u/key"},
		{"hypervisor", `hypervisor = "firecracker"`, `hypervisor = "qemu"`,
			func(c *Config) any { return c.Hypervisor }, "firecracker", "qemu"},
		{"firecracker_bin", `firecracker_bin = "/a/fc"`, `firecracker_bin = "/b/fc"`,
			func(c *Config) any { return c.FirecrackerBin }, "/a/fc", "/b/fc"},
		{"jailer_bin", `jailer_bin = "/a/j"`, `jailer_bin = "/b/j"`,
			func(c *Config) any { return c.JailerBin }, "/a/j", "/b/j"},
		{"qemu_bin", `qemu_bin = "/a/q"`, `qemu_bin = ""`,
			func(c *Config) any { return c.QEMUBin }, "/a/q", ""},
		{"jailer_enabled", `jailer_enabled = true`, `jailer_enabled = false`,
			func(c *Config) any { return c.JailerEnabled }, true, false},
		{"boot_timeout", `boot_timeout = "5s"`, `boot_timeout = "1h"`,
			func(c *Config) any { return c.BootTimeout }, 5 * time.Second, time.Hour},
		{"network.bridge", "[network]\nbridge = \"bangera\"", "network.bridge = \"bangerb\"",
			func(c *Config) any { return c.Network.Bridge }, "bangera", "bangerb"},
		{"network.cidr", "[network]\ncidr = \"192.168.7.1/24\"", "network = { cidr = \"100.64.0.9/29\" }",
			func(c *Config) any { return c.Network.CIDR.String() }, "192.168.7.1/24", "100.64.0.9/29"},
		{"network.dns_addr", "[network]\ndns_addr = \"127.0.0.53:53\"", "[network]\ndns_addr = \"127.0.0.1:5300\"",
			func(c *Config) any { return c.Network.DNSAddr.String() }, "127.0.0.53:53", "127.0.0.1:5300"},
		{"network.upstream_dns", "[network]\nupstream_dns = [\"1.1.1.1\", \"8.8.8.8\"]", "[network]\nupstream_dns = []",
			func(c *Config) any { return fmt.Sprint(c.Network.UpstreamDNS) }, "[1.1.1.1:53 8.8.8.8:53]", "[]"},
		{"vm_defaults.vcpu", "[vm_defaults]\nvcpu = 1", "[vm_defaults]\nvcpu = 64",
			func(c *Config) any { return c.VMDefaults.VCPU.Value }, 1, 64},
		{"vm_defaults.memory_mib", "[vm_defaults]\nmemory_mib = 128", "[vm_defaults]\nmemory_mib = 262144",
			func(c *Config) any { return c.VMDefaults.MemoryMiB.Value }, 128, 262144},
		{"vm_defaults.disk_size", "[vm_defaults]\ndisk_size = \"1G\"", "vm_defaults.disk_size = \"16T\"",
			func(c *Config) any { return c.VMDefaults.DiskBytes.Value }, int64(1 << 30), int64(16 << 40)},
		{"file_sync", "[[file_sync]]\nhost = \"/a\"\nguest = \"/root/a\"\n[[file_sync]]\nhost = \"/b\"\nguest = \"/root/b\"",
			"file_sync = [{host = \"~/c\", guest = \"~/c\"}]",
			func(c *Config) any {
				var s []string
				for _, f := range c.FileSync {
					s = append(s, f.HostPath+":"+f.GuestPath)
				}
				return s
			}, []string{"/a:/root/a", "/b:/root/b"}, []string{"/home/u/c:/root/c"}},
	}
	for _, tt := range tests {
		for _, v := range []struct {
			name      string
			sys, user string
			want      any
			fromUser  bool
		}{
			{"system", tt.sys, "", tt.wantS, false},
			{"user", "", tt.user, tt.wantU, true},
			{"both", tt.sys, tt.user, tt.wantU, true},
		} {
			t.Run(tt.key+"/"+v.name, func(t *testing.T) {
				c, cfgs, err := load(t, v.sys, v.user)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(v.want, tt.get(c)); diff != "" {
					t.Errorf("value (-want +got):\n%s", diff)
				}
				wantFile := cfgs[0]
				if v.fromUser {
					wantFile = cfgs[1]
				}
				if got := c.Origins[tt.key]; got != wantFile {
					t.Errorf("Origins[%s] = %q, want %q", tt.key, got, wantFile)
				}
				if len(c.Origins) != 1 {
					t.Errorf("Origins = %v, want only %s", c.Origins, tt.key)
				}
			})
		}
	}
}

func TestHostHeuristic(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name string
		host HostFacts
		want VMDefaults
	}{
		{"unknown host", HostFacts{}, VMDefaults{
			VCPU:      Sourced[int]{1, SourceBuiltin, ""},
			MemoryMiB: Sourced[int]{1024, SourceBuiltin, ""},
			DiskBytes: Sourced[int64]{8 * gib, SourceHost, ""},
		}},
		{"2 cpus 4 GiB", HostFacts{2, 4 * gib}, VMDefaults{
			VCPU:      Sourced[int]{1, SourceBuiltin, ""},
			MemoryMiB: Sourced[int]{1024, SourceBuiltin, ""},
			DiskBytes: Sourced[int64]{8 * gib, SourceHost, ""},
		}},
		{"4 cpus 8 GiB: exactly the floor is host", HostFacts{4, 8 * gib}, VMDefaults{
			VCPU:      Sourced[int]{1, SourceHost, ""},
			MemoryMiB: Sourced[int]{1024, SourceHost, ""},
			DiskBytes: Sourced[int64]{8 * gib, SourceHost, ""},
		}},
		{"8 cpus 32 GiB", HostFacts{8, 32 * gib}, VMDefaults{
			VCPU:      Sourced[int]{2, SourceHost, ""},
			MemoryMiB: Sourced[int]{4096, SourceHost, ""},
			DiskBytes: Sourced[int64]{8 * gib, SourceHost, ""},
		}},
		{"11 cpus 15 GiB rounds down", HostFacts{11, 15 * gib}, VMDefaults{
			VCPU:      Sourced[int]{2, SourceHost, ""},
			MemoryMiB: Sourced[int]{1792, SourceHost, ""}, // 1920 MiB down to 7*256
			DiskBytes: Sourced[int64]{8 * gib, SourceHost, ""},
		}},
		{"64 cpus 512 GiB capped", HostFacts{64, 512 * gib}, VMDefaults{
			VCPU:      Sourced[int]{4, SourceHost, ""},
			MemoryMiB: Sourced[int]{8192, SourceHost, ""},
			DiskBytes: Sourced[int64]{8 * gib, SourceHost, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Default(tt.host, home).VMDefaults); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestVMDefaultsProvenance(t *testing.T) {
	tests := []struct {
		name      string
		host      HostFacts
		sys, user string
		want      func(sys, user string) VMDefaults
	}{
		{"all config, split across files", bigHost,
			"[vm_defaults]\nvcpu = 3\ndisk_size = \"10G\"", "[vm_defaults]\nmemory_mib = 1536\ndisk_size = \"12G\"",
			func(sys, user string) VMDefaults {
				return VMDefaults{
					VCPU:      Sourced[int]{3, SourceConfig, sys},
					MemoryMiB: Sourced[int]{1536, SourceConfig, user},
					DiskBytes: Sourced[int64]{12 << 30, SourceConfig, user},
				}
			}},
		{"config, host and builtin together", HostFacts{CPUs: 16, MemoryBytes: 4 << 30},
			"", "vm_defaults = { disk_size = \"4G\" }",
			func(sys, user string) VMDefaults {
				return VMDefaults{
					VCPU:      Sourced[int]{4, SourceHost, ""},
					MemoryMiB: Sourced[int]{1024, SourceBuiltin, ""},
					DiskBytes: Sourced[int64]{4 << 30, SourceConfig, user},
				}
			}},
		{"config below the floor is kept", HostFacts{CPUs: 2, MemoryBytes: 2 << 30},
			"[vm_defaults]\nmemory_mib = 256", "",
			func(sys, user string) VMDefaults {
				return VMDefaults{
					VCPU:      Sourced[int]{1, SourceBuiltin, ""},
					MemoryMiB: Sourced[int]{256, SourceConfig, sys},
					DiskBytes: Sourced[int64]{8 << 30, SourceHost, ""},
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfgs := files(t, tt.sys, tt.user)
			c, err := Load(LoadOptions{Files: cfgs, Home: home, Host: tt.host, Env: noEnv})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want(cfgs[0], cfgs[1]), c.VMDefaults); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestErrors checks each rejection: %s in want is the file.
func TestErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		// Syntax.
		{"syntax", "log_level = \"info\"\n\nvcpu = \n", `%s:3: syntax error: unexpected character U+000A at start of value`},
		{"unterminated string", "a = 1\nlog_level = \"info\n", `%s:2: syntax error: basic strings cannot have new lines`},
		{"duplicate key", "log_level = \"info\"\nlog_level = \"warn\"\n", `%s:2: syntax error: key log_level is already defined`},

		// Unknown keys.
		{"unknown top-level key", "log_level = \"info\"\nloglevel = \"info\"\n", `%s:2: unknown key "loglevel"`},
		{"unknown key in table", "[network]\nbridge = \"banger0\"\n\nbrige = \"banger1\"\n", `%s:4: unknown key "network.brige"`},
		{"unknown table", "# system\n[vm_defualts]\nvcpu = 2\n", `%s:3: unknown key "vm_defualts.vcpu"`},
		{"unknown dotted key", "\n\nvm_defualts.vcpu = 2\n", `%s:3: unknown key "vm_defualts.vcpu"`},
		{"unknown empty table", "[extra]\n", `%s:1: unknown key "extra"`},
		{"unknown key in inline table", "network = { bridge = \"banger0\", mtu = 1500 }\n", `%s:1: unknown key "network.mtu"`},
		{"unknown key in file_sync entry", "[[file_sync]]\nhost = \"~/a\"\nguest = \"~/a\"\n\n[[file_sync]]\nhost = \"~/b\"\nguest = \"~/b\"\nmod = \"0600\"\n",
			`%s:8: unknown key "file_sync[1].mod"`},
		{"unknown key in inline file_sync entry", "file_sync = [\n  {host = \"~/a\", guest = \"~/a\"},\n  {host = \"~/b\", guest = \"~/b\", owner = \"me\"},\n]\n",
			`%s:3: unknown key "file_sync[1].owner"`},
		{"unknown array of tables", "\n[[file_sinc]]\nhost = \"~/a\"\n", `%s:3: unknown key "file_sinc[0].host"`},
		{"quoted dotted key is not a table path", "\"network.bridge\" = \"banger1\"\n", `%s:1: unknown key "\"network.bridge\""`},
		{"entry field at top level", "\"file_sync[].host\" = \"~/a\"\n", `%s:1: unknown key "\"file_sync[].host\""`},

		// Types.
		{"string got integer", "\nlog_level = 3\n", `%s:2: log_level: expected a string, got integer`},
		{"bool got string", "jailer_enabled = \"yes\"\n", `%s:1: jailer_enabled: expected a boolean, got string`},
		{"integer got float", "[vm_defaults]\nvcpu = 2.0\n", `%s:2: vm_defaults.vcpu: expected an integer, got float`},
		{"integer got string", "[vm_defaults]\nmemory_mib = \"2048\"\n", `%s:2: vm_defaults.memory_mib: expected an integer, got string`},
		{"size got integer", "[vm_defaults]\ndisk_size = 8\n", `%s:2: vm_defaults.disk_size: expected a string, got integer`},
		{"duration got integer", "boot_timeout = 180\n", `%s:1: boot_timeout: expected a string, got integer`},
		{"table got string", "network = \"banger0\"\n", `%s:1: network: expected a table, got string`},
		{"array got string", "[network]\nupstream_dns = \"1.1.1.1\"\n", `%s:2: network.upstream_dns: expected an array, got string`},
		{"array element type", "[network]\nupstream_dns = [\n  \"1.1.1.1\",\n  53,\n]\n", `%s:4: network.upstream_dns[1]: expected a string, got integer`},
		{"file_sync got table", "[file_sync]\nhost = \"~/a\"\n", `%s:1: file_sync: expected an array, got table`},
		{"file_sync entry got string", "file_sync = [\"~/a\"]\n", `%s:1: file_sync[0]: expected a table, got string`},
		{"mode got integer", "[[file_sync]]\nhost = \"~/a\"\nguest = \"~/a\"\nmode = 0o600\n", `%s:4: file_sync[0].mode: expected a string, got integer`},
		{"date", "boot_timeout = 1979-05-27\n", `%s:1: boot_timeout: expected a string, got date`},
		{"datetime", "log_level = 1979-05-27T07:32:00Z\n", `%s:1: log_level: expected a string, got datetime`},

		// Values.
		{"log_level", "log_level = \"verbose\"\n", `%s:1: log_level: must be one of debug, info, warn, error (got "verbose")`},
		{"log_level case", "log_level = \"INFO\"\n", `%s:1: log_level: must be one of debug, info, warn, error (got "INFO")`},
		{"image upper case", "default_image_name = \"Debian\"\n", `%s:1: default_image_name: "Debian" is not a valid name: use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'`},
		{"image leading dash", "default_image_name = \"-x\"\n", `%s:1: default_image_name: "-x" is not a valid name: use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'`},
		{"image trailing dash", "default_image_name = \"x-\"\n", `%s:1: default_image_name: "x-" is not a valid name: use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'`},
		{"image empty", "default_image_name = \"\"\n", `%s:1: default_image_name: "" is not a valid name: use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'`},
		{"image dot", "default_image_name = \"debian.12\"\n", `%s:1: default_image_name: "debian.12" is not a valid name: use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'`},
		{"image too long", "default_image_name = \"" + strings.Repeat("a", 64) + "\"\n", `%s:1: default_image_name: "` + strings.Repeat("a", 64) + `" is not a valid name: use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'`},
		{"kernel leading dot", "default_kernel_name = \".k\"\n", `%s:1: default_kernel_name: must be 1-63 characters of a-z, 0-9, '.' and '-', starting with a letter or digit (got ".k")`},
		{"kernel underscore", "default_kernel_name = \"k_1\"\n", `%s:1: default_kernel_name: must be 1-63 characters of a-z, 0-9, '.' and '-', starting with a letter or digit (got "k_1")`},
		{"kernel too long", "default_kernel_name = \"" + strings.Repeat("k", 64) + "\"\n", `%s:1: default_kernel_name: must be 1-63 characters of a-z, 0-9, '.' and '-', starting with a letter or digit (got "` + strings.Repeat("k", 64) + `")`},
		{"ssh_key_path relative", "\nssh_key_path = \"keys/id\"\n", `%s:2: ssh_key_path: must be an absolute path or start with ~/ (got "keys/id")`},
		{"ssh_key_path other user", "ssh_key_path = \"~bob/id\"\n", `%s:1: ssh_key_path: must be an absolute path or start with ~/ (got "~bob/id")`},
		{"ssh_key_path bare tilde", "ssh_key_path = \"~\"\n", `%s:1: ssh_key_path: must be an absolute path or start with ~/ (got "~")`},
		{"ssh_key_path NUL", "ssh_key_path = \"/a\\u0000b\"\n", `%s:1: ssh_key_path: must not contain a NUL byte`},
		{"hypervisor", "hypervisor = \"kvm\"\n", `%s:1: hypervisor: must be one of auto, firecracker, qemu (got "kvm")`},
		{"firecracker_bin relative", "firecracker_bin = \"firecracker\"\n", `%s:1: firecracker_bin: must be an absolute path or start with ~/ (got "firecracker")`},
		{"jailer_bin relative", "jailer_bin = \"./jailer\"\n", `%s:1: jailer_bin: must be an absolute path or start with ~/ (got "./jailer")`},
		{"qemu_bin relative", "qemu_bin = \"bin/qemu\"\n", `%s:1: qemu_bin: must be an absolute path or start with ~/ (got "bin/qemu")`},
		{"boot_timeout no unit", "boot_timeout = \"180\"\n", `%s:1: boot_timeout: must be a duration such as "180s" or "3m" (got "180")`},
		{"boot_timeout short", "boot_timeout = \"4.9s\"\n", `%s:1: boot_timeout: must be at least 5s (got 4.9s)`},
		{"boot_timeout negative", "boot_timeout = \"-1m\"\n", `%s:1: boot_timeout: must be at least 5s (got -1m0s)`},
		{"bridge prefix", "[network]\nbridge = \"br0\"\n", `%s:2: network.bridge: "br0" is not a valid bridge name: use "banger" followed by up to 9 characters of a-z, 0-9 and '-'`},
		{"bridge too long", "[network]\nbridge = \"banger0123456789\"\n", `%s:2: network.bridge: "banger0123456789" is not a valid bridge name: use "banger" followed by up to 9 characters of a-z, 0-9 and '-'`},
		{"bridge upper", "[network]\nbridge = \"bangerX\"\n", `%s:2: network.bridge: "bangerX" is not a valid bridge name: use "banger" followed by up to 9 characters of a-z, 0-9 and '-'`},
		{"cidr no prefix", "[network]\ncidr = \"172.16.0.1\"\n", `%s:2: network.cidr: must be the bridge address with a prefix length such as "172.16.0.1/24" (got "172.16.0.1")`},
		{"cidr ipv6", "[network]\ncidr = \"fd00::1/64\"\n", `%s:2: network.cidr: must be an IPv4 address with a prefix length such as "172.16.0.1/24" (got "fd00::1/64")`},
		{"cidr public", "[network]\ncidr = \"8.8.8.1/24\"\n", `%s:2: network.cidr: must be inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10 (got "8.8.8.1/24")`},
		{"cidr just outside 172.16/12", "[network]\ncidr = \"172.32.0.1/24\"\n", `%s:2: network.cidr: must be inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10 (got "172.32.0.1/24")`},
		{"cidr prefix too short", "[network]\ncidr = \"10.0.0.1/15\"\n", `%s:2: network.cidr: prefix length must be between 16 and 29 (got "10.0.0.1/15")`},
		{"cidr prefix too long", "[network]\ncidr = \"10.0.0.1/30\"\n", `%s:2: network.cidr: prefix length must be between 16 and 29 (got "10.0.0.1/30")`},
		{"cidr network address", "[network]\ncidr = \"172.16.0.0/24\"\n", `%s:2: network.cidr: 172.16.0.0 is the network address of its subnet; use a host address such as 172.16.0.1/24 (got "172.16.0.0/24")`},
		{"cidr broadcast address", "[network]\ncidr = \"192.168.3.255/23\"\n", `%s:2: network.cidr: 192.168.3.255 is the broadcast address of its subnet; use a host address such as 192.168.2.1/23 (got "192.168.3.255/23")`},
		{"dns_addr not loopback", "[network]\ndns_addr = \"172.16.0.1:53\"\n", `%s:2: network.dns_addr: must be a loopback IP:port such as "127.0.0.1:42069" (got "172.16.0.1:53")`},
		{"dns_addr no port", "[network]\ndns_addr = \"127.0.0.1\"\n", `%s:2: network.dns_addr: must be a loopback IP:port such as "127.0.0.1:42069" (got "127.0.0.1")`},
		{"dns_addr port 0", "[network]\ndns_addr = \"127.0.0.1:0\"\n", `%s:2: network.dns_addr: must be a loopback IP:port such as "127.0.0.1:42069" (got "127.0.0.1:0")`},
		{"upstream_dns name", "[network]\nupstream_dns = [\"1.1.1.1\", \"dns.google\"]\n", `%s:2: network.upstream_dns[1]: must be an IP or IP:port such as "1.1.1.1" or "[2606:4700::1111]:53" (got "dns.google")`},
		{"upstream_dns unspecified", "[network]\nupstream_dns = [\"0.0.0.0\"]\n", `%s:2: network.upstream_dns[0]: must be a resolver's address with a non-zero port (got "0.0.0.0")`},
		{"vcpu low", "[vm_defaults]\n\n\n\n\n\nvcpu = 0\n", `%s:7: vm_defaults.vcpu: must be between 1 and 64 (got 0)`},
		{"vcpu high", "[vm_defaults]\nvcpu = 65\n", `%s:2: vm_defaults.vcpu: must be between 1 and 64 (got 65)`},
		{"memory low", "[vm_defaults]\nmemory_mib = 127\n", `%s:2: vm_defaults.memory_mib: must be between 128 and 262144 (got 127)`},
		{"memory high", "[vm_defaults]\nmemory_mib = 262145\n", `%s:2: vm_defaults.memory_mib: must be between 128 and 262144 (got 262145)`},
		{"disk small", "[vm_defaults]\ndisk_size = \"1023M\"\n", `%s:2: vm_defaults.disk_size: must be between 1G and 16T (got "1023M")`},
		{"disk large", "[vm_defaults]\ndisk_size = \"17T\"\n", `%s:2: vm_defaults.disk_size: must be between 1G and 16T (got "17T")`},
		{"disk unit", "[vm_defaults]\ndisk_size = \"8GB\"\n", `%s:2: vm_defaults.disk_size: size "8GB": unknown unit "GB"; use K, M, G or T (binary: 1G = 1024M) or KiB, MiB, GiB, TiB`},
		{"host relative", "[[file_sync]]\nhost = \".bashrc\"\nguest = \"~/.bashrc\"\n", `%s:2: file_sync[0].host: must be an absolute path or start with ~/ (got ".bashrc")`},
		{"guest outside /root", "[[file_sync]]\nhost = \"~/a\"\nguest = \"/etc/a\"\n", `%s:3: file_sync[0].guest: must start with ~/ or /root/ (got "/etc/a")`},
		{"guest /rootkit", "[[file_sync]]\nhost = \"~/a\"\nguest = \"/rootkit/a\"\n", `%s:3: file_sync[0].guest: must start with ~/ or /root/ (got "/rootkit/a")`},
		{"guest dotdot", "[[file_sync]]\nhost = \"~/a\"\nguest = \"~/x/../../etc/a\"\n", `%s:3: file_sync[0].guest: must not contain ".." (got "~/x/../../etc/a")`},
		{"mode not octal", "[[file_sync]]\nhost = \"~/a\"\nguest = \"~/a\"\nmode = \"0690\"\n", `%s:4: file_sync[0].mode: must be an octal mode from 0 to 0777 such as "0600" (got "0690")`},
		{"mode too big", "[[file_sync]]\nhost = \"~/a\"\nguest = \"~/a\"\nmode = \"1777\"\n", `%s:4: file_sync[0].mode: must be an octal mode from 0 to 0777 such as "0600" (got "1777")`},
		{"mode empty", "[[file_sync]]\nhost = \"~/a\"\nguest = \"~/a\"\nmode = \"\"\n", `%s:4: file_sync[0].mode: must be an octal mode from 0 to 0777 such as "0600" (got "")`},
		{"host missing", "[[file_sync]]\nguest = \"~/a\"\n", `%s:1: file_sync[0].host: missing; every [[file_sync]] entry needs host and guest`},
		{"guest missing inline", "\nfile_sync = [{ host = \"~/a\" }]\n", `%s:2: file_sync[0].guest: missing; every [[file_sync]] entry needs host and guest`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, cfgs, err := load(t, tt.doc)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if got, want := err.Error(), fmt.Sprintf(tt.want, cfgs[0]); got != want {
				t.Errorf("error:\n got %s\nwant %s", got, want)
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.File != cfgs[0] || ce.Line == 0 {
				t.Errorf("error %#v: want an *Error with the file and line", ce)
			}
		})
	}
}

func TestErrorsJoinedInOrder(t *testing.T) {
	_, cfgs, err := load(t,
		"[vm_defaults]\nmemory_mib = 1\nvcpu = 0\n[network]\nbridge = \"x\"\n",
		"hypervisor = \"xen\"\nlog_level = \"loud\"\n")
	if err == nil {
		t.Fatal("Load succeeded, want errors")
	}
	want := strings.Join([]string{
		cfgs[0] + `:2: vm_defaults.memory_mib: must be between 128 and 262144 (got 1)`,
		cfgs[0] + `:3: vm_defaults.vcpu: must be between 1 and 64 (got 0)`,
		cfgs[0] + `:5: network.bridge: "x" is not a valid bridge name: use "banger" followed by up to 9 characters of a-z, 0-9 and '-'`,
		cfgs[1] + `:1: hypervisor: must be one of auto, firecracker, qemu (got "xen")`,
		cfgs[1] + `:2: log_level: must be one of debug, info, warn, error (got "loud")`,
	}, "\n")
	if diff := cmp.Diff(want, err.Error()); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

func TestEnvLogLevel(t *testing.T) {
	tests := []struct {
		name, env, doc string
		want           string
		wantOrigin     bool
		wantErr        string
	}{
		{"unset keeps the file", "", `log_level = "warn"`, "warn", false, ""},
		{"overrides the file", "debug", `log_level = "warn"`, "debug", true, ""},
		{"overrides the default", "error", "", "error", true, ""},
		{"validated", "trace", "", "", false, `BANGER_LOG_LEVEL: must be one of debug, info, warn, error (got "trace")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := func(k string) string {
				if k == EnvLogLevel {
					return tt.env
				}
				return ""
			}
			c, err := Load(LoadOptions{Files: files(t, tt.doc), Home: home, Env: env})
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.LogLevel != tt.want {
				t.Errorf("LogLevel = %q, want %q", c.LogLevel, tt.want)
			}
			if got := c.Origins["log_level"] == "$BANGER_LOG_LEVEL"; got != tt.wantOrigin {
				t.Errorf("Origins[log_level] = %q", c.Origins["log_level"])
			}
		})
	}
}

func TestPathExpansion(t *testing.T) {
	tests := []struct {
		name, doc string
		get       func(*Config) string
		want      string
	}{
		{"ssh key under home", `ssh_key_path = "~/.ssh/id_ed25519"`, func(c *Config) string { return c.SSHKeyPath }, "/home/u/.ssh/id_ed25519"},
		{"ssh key absolute, cleaned", `ssh_key_path = "/srv//keys/./id"`, func(c *Config) string { return c.SSHKeyPath }, "/srv/keys/id"},
		{"ssh key empty is banger's", `ssh_key_path = ""`, func(c *Config) string { return c.SSHKeyPath }, ""},
		{"firecracker under home", `firecracker_bin = "~/bin/firecracker"`, func(c *Config) string { return c.FirecrackerBin }, "/home/u/bin/firecracker"},
		{"qemu under home", `qemu_bin = "~/qemu/bin/qemu-system-x86_64"`, func(c *Config) string { return c.QEMUBin }, "/home/u/qemu/bin/qemu-system-x86_64"},
		{"file_sync host kept raw", "[[file_sync]]\nhost = \"~/.config/../.npmrc\"\nguest = \"/root/.npmrc\"",
			func(c *Config) string { return c.FileSync[0].Host }, "~/.config/../.npmrc"},
		{"file_sync host expanded", "[[file_sync]]\nhost = \"~/.config/../.npmrc\"\nguest = \"/root/.npmrc\"",
			func(c *Config) string { return c.FileSync[0].HostPath }, "/home/u/.npmrc"},
		{"file_sync guest expanded", "[[file_sync]]\nhost = \"~/a\"\nguest = \"~/dir/./a\"",
			func(c *Config) string { return c.FileSync[0].GuestPath }, "/root/dir/a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := load(t, tt.doc)
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.get(c); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFiles(t *testing.T) {
	t.Run("missing files are skipped", func(t *testing.T) {
		cfgs := files(t, "", `log_level = "warn"`, "")
		c, err := Load(LoadOptions{Files: cfgs, Home: home, Env: noEnv})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{cfgs[1]}, c.Files); diff != "" {
			t.Errorf("Files (-want +got):\n%s", diff)
		}
	})
	t.Run("unreadable file is an error", func(t *testing.T) {
		dir := t.TempDir()
		_, err := Load(LoadOptions{Files: []string{dir}, Home: home, Env: noEnv})
		if err == nil || !strings.HasPrefix(err.Error(), "load config "+dir+": ") {
			t.Errorf("error = %v, want load config %s: ...", err, dir)
		}
		var ce *Error
		if errors.As(err, &ce) {
			t.Errorf("read error %v should not be a config *Error", err)
		}
	})
	t.Run("relative home", func(t *testing.T) {
		if _, err := Load(LoadOptions{Home: "home/u"}); err == nil {
			t.Error("Load with a relative home succeeded")
		}
	})
	t.Run("default files", func(t *testing.T) {
		t.Setenv("XDG_CONFIG_HOME", "")
		got := Files(paths.Layout{EtcDir: "/etc/banger"}, paths.User{Home: home})
		want := []string{"/etc/banger/config.toml", "/home/u/.config/banger/config.toml"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Files (-want +got):\n%s", diff)
		}
	})
}

func TestValidNames(t *testing.T) {
	tests := []struct {
		name  string
		check func(string) error
		in    string
		ok    bool
	}{
		{"label", ValidDNSLabel, "a", true},
		{"label", ValidDNSLabel, "web-1", true},
		{"label", ValidDNSLabel, strings.Repeat("a", 63), true},
		{"label", ValidDNSLabel, strings.Repeat("a", 64), false},
		{"label", ValidDNSLabel, "", false},
		{"label", ValidDNSLabel, "a_b", false},
		{"label", ValidDNSLabel, "a.vm", false},
		{"bridge", ValidBridgeName, "banger", true},
		{"bridge", ValidBridgeName, "banger-test-123", true},
		{"bridge", ValidBridgeName, "banger-test-1234", false},
		{"bridge", ValidBridgeName, "docker0", false},
		{"bridge", ValidBridgeName, "banger.0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.in, func(t *testing.T) {
			err := tt.check(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("check(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, api.ErrBadRequest) {
				t.Errorf("check(%q) = %v, want a bad_request error", tt.in, err)
			}
		})
	}
}

func TestMemTotal(t *testing.T) {
	tests := []struct {
		name, in string
		want     uint64
	}{
		{"meminfo", "MemTotal:       32768000 kB\nMemFree:        1000 kB\n", 32768000 * 1024},
		{"later line", "Foo: 1 kB\nMemTotal: 4 kB\n", 4096},
		{"absent", "MemFree: 1 kB\n", 0},
		{"unit", "MemTotal: 4 MB\n", 0},
		{"garbage", "MemTotal: lots kB\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := memTotal(strings.NewReader(tt.in)); got != tt.want {
				t.Errorf("memTotal = %d, want %d", got, tt.want)
			}
		})
	}
	if h := DetectHost(); h.CPUs < 1 {
		t.Errorf("DetectHost() = %+v, want at least one CPU", h)
	}
	if _, err := os.Stat("/proc/meminfo"); err == nil {
		if h := DetectHost(); h.MemoryBytes == 0 {
			t.Errorf("DetectHost() = %+v, want memory from /proc/meminfo", h)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
}
