package config

import "fmt"

// Key documents one config key; docs/config.md is generated from Keys.
type Key struct {
	// Name is the dotted key. Fields of [[file_sync]] entries are named
	// "file_sync[].host".
	Name string
	// Type is what to write in TOML: string, boolean, integer, duration (a
	// string such as "180s"), size (a string such as "8G"), path (a string,
	// absolute or starting with ~/), table, array of strings, array of tables.
	Type    string
	Default string // as the user would write it, or a description when computed
	Env     string // an environment variable that overrides the key, if any
	Doc     string
}

const (
	typeTable  = "table"
	typeTables = "array of tables"
)

// Keys lists every config key in the order docs should show them.
func Keys() []Key {
	fs := fields()
	keys := make([]Key, len(fs))
	for i, f := range fs {
		keys[i] = f.Key
	}
	return keys
}

// applyFunc type-checks and validates a value v found at key, and sets it.
type applyFunc func(d *decoder, c *Config, key string, v any)

// entryFunc is applyFunc for a field of a [[file_sync]] entry.
type entryFunc func(d *decoder, e *FileSync, key string, v any)

// field is a Key with what loading it does. Tables have neither func; their
// keys are fields of their own.
type field struct {
	Key
	apply applyFunc
	entry entryFunc
}

func fields() []field {
	return []field{
		{Key: Key{Name: "log_level", Type: "string", Default: `"info"`, Env: EnvLogLevel,
			Doc: `Log level of the daemons: "debug", "info", "warn" or "error".`},
			apply: asString(func(c *Config, s, _ string) error {
				if err := validLogLevel(s); err != nil {
					return err
				}
				c.LogLevel = s
				return nil
			})},
		{Key: Key{Name: "default_image_name", Type: "string", Default: `"debian-bookworm"`,
			Doc: "Image used when a command names none; pulled from the catalog on first use. A DNS label: 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'."},
			apply: asString(func(c *Config, s, _ string) error {
				if err := ValidDNSLabel(s); err != nil {
					return err
				}
				c.DefaultImage = s
				return nil
			})},
		{Key: Key{Name: "default_kernel_name", Type: "string", Default: `"debian-cloud"`,
			Doc: "Kernel used when an image names none; pulled from the catalog on first use. 1-63 characters of a-z, 0-9, '.' and '-', starting with a letter or digit."},
			apply: asString(func(c *Config, s, _ string) error {
				if err := validKernelName(s); err != nil {
					return err
				}
				c.DefaultKernel = s
				return nil
			})},
		{Key: Key{Name: "ssh_key_path", Type: "path", Default: "banger's own key, ~/.local/state/banger/ssh/id_ed25519",
			Doc: "Private key banger uses to ssh into guests; its .pub is installed in each guest. Absolute or starting with ~/; relative paths are rejected. Empty means banger's own key, created on first use."},
			apply: asString(func(c *Config, s, home string) error {
				if s == "" {
					return nil
				}
				p, err := hostPath(s, home)
				if err != nil {
					return err
				}
				c.SSHKeyPath = p
				return nil
			})},
		{Key: Key{Name: "hypervisor", Type: "string", Default: `"auto"`,
			Doc: `VMM to run guests with: "firecracker", "qemu", or "auto" (Firecracker when /dev/kvm and a firecracker binary are present, otherwise QEMU, with KVM if available and software emulation if not).`},
			apply: asString(func(c *Config, s, _ string) error {
				if err := oneOf(s, HypervisorAuto, HypervisorFirecracker, HypervisorQEMU); err != nil {
					return err
				}
				c.Hypervisor = s
				return nil
			})},
		{Key: Key{Name: "firecracker_bin", Type: "path", Default: "firecracker found on PATH",
			Doc: "Firecracker binary. Absolute or starting with ~/; empty means a PATH lookup."},
			apply: binary(func(c *Config) *string { return &c.FirecrackerBin })},
		{Key: Key{Name: "jailer_bin", Type: "path", Default: "jailer found on PATH",
			Doc: "Firecracker's jailer binary, used when jailer_enabled is true. Absolute or starting with ~/; empty means a PATH lookup."},
			apply: binary(func(c *Config) *string { return &c.JailerBin })},
		{Key: Key{Name: "qemu_bin", Type: "path", Default: "qemu-system-<arch> found on PATH",
			Doc: "QEMU system emulator binary. Absolute or starting with ~/; empty means a PATH lookup."},
			apply: binary(func(c *Config) *string { return &c.QEMUBin })},
		{Key: Key{Name: "jailer_enabled", Type: "boolean", Default: "false",
			Doc: "Launch Firecracker through its jailer (chroot, namespaces, dropped privileges) instead of directly as the owner user."},
			apply: func(d *decoder, c *Config, key string, v any) {
				if b, ok := d.boolean(key, v); ok {
					c.JailerEnabled = b
				}
			}},
		{Key: Key{Name: "boot_timeout", Type: "duration", Default: `"180s"`,
			Doc: `How long a VM may take from start to a ready guest agent before the start fails; at least "5s". Software emulation (QEMU without KVM) needs the generous default.`},
			apply: asString(func(c *Config, s, _ string) error {
				d, err := parseBootTimeout(s)
				if err != nil {
					return err
				}
				c.BootTimeout = d
				return nil
			})},

		{Key: Key{Name: "network", Type: typeTable, Doc: "The host bridge, the guests' subnet and DNS."}},
		{Key: Key{Name: "network.bridge", Type: "string", Default: `"banger0"`,
			Doc: `Name of the host bridge the VMs' taps join: "banger" followed by up to 9 characters of a-z, 0-9 and '-'.`},
			apply: asString(func(c *Config, s, _ string) error {
				if err := ValidBridgeName(s); err != nil {
					return err
				}
				c.Network.Bridge = s
				return nil
			})},
		{Key: Key{Name: "network.cidr", Type: "string", Default: `"172.16.0.1/24"`,
			Doc: "The bridge's own address and the prefix length of the guests' subnet. IPv4 inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10, prefix length 16 to 29; the address is neither the subnet's network nor its broadcast address. Guests use it as their gateway."},
			apply: asString(func(c *Config, s, _ string) error {
				p, err := parseCIDR(s)
				if err != nil {
					return err
				}
				c.Network.CIDR = p
				return nil
			})},
		{Key: Key{Name: "network.dns_addr", Type: "string", Default: `"127.0.0.1:42069"`,
			Doc: "Loopback IP:port where banger serves the .vm zone; the host resolver is pointed at it."},
			apply: asString(func(c *Config, s, _ string) error {
				a, err := parseDNSAddr(s)
				if err != nil {
					return err
				}
				c.Network.DNSAddr = a
				return nil
			})},
		{Key: Key{Name: "network.upstream_dns", Type: "array of strings", Default: "[] (the host's resolvers)",
			Doc: `Resolvers the guests use for names outside .vm, each "IP" (port 53) or "IP:port" ("[IPv6]:port").`},
			apply: func(d *decoder, c *Config, key string, v any) {
				arr, ok := d.array(key, v)
				if !ok {
					return
				}
				c.Network.UpstreamDNS = nil
				for i, e := range arr {
					ek := index(key, i)
					s, ok := d.str(ek, e)
					if !ok {
						continue
					}
					ap, err := parseUpstream(s)
					if err != nil {
						d.fail(ek, err)
						continue
					}
					c.Network.UpstreamDNS = append(c.Network.UpstreamDNS, ap)
				}
			}},

		{Key: Key{Name: "vm_defaults", Type: typeTable,
			Doc: "Sizes of a new VM when no flag says otherwise. Each key resolves as: this file, else a heuristic on the host, else a built-in floor; `banger doctor` shows which."}},
		{Key: Key{Name: "vm_defaults.vcpu", Type: "integer", Default: "host CPUs / 4, at most 4, at least 1",
			Doc: "Virtual CPUs, 1 to 64."},
			apply: func(d *decoder, c *Config, key string, v any) {
				if n, ok := d.intIn(key, v, MinVCPU, MaxVCPU); ok {
					c.VMDefaults.VCPU = Sourced[int]{Value: n, Source: SourceConfig, File: d.file}
				}
			}},
		{Key: Key{Name: "vm_defaults.memory_mib", Type: "integer", Default: "host RAM / 8 in steps of 256 MiB, at most 8192, at least 1024",
			Doc: "Guest memory in MiB, 128 to 262144."},
			apply: func(d *decoder, c *Config, key string, v any) {
				if n, ok := d.intIn(key, v, MinMemoryMiB, MaxMemoryMiB); ok {
					c.VMDefaults.MemoryMiB = Sourced[int]{Value: n, Source: SourceConfig, File: d.file}
				}
			}},
		{Key: Key{Name: "vm_defaults.disk_size", Type: "size", Default: `"8G"`,
			Doc: `Size of the VM's writable disk, such as "8G", "512M", "16GiB" or "1T" (binary units; a bare number is bytes), from 1G to 16T.`},
			apply: func(d *decoder, c *Config, key string, v any) {
				s, ok := d.str(key, v)
				if !ok {
					return
				}
				n, err := ParseSize(s)
				if err == nil && (n < MinDiskBytes || n > MaxDiskBytes) {
					err = fmt.Errorf("must be between %s and %s (got %q)", FormatSize(MinDiskBytes), FormatSize(MaxDiskBytes), s)
				}
				if err != nil {
					d.fail(key, err)
					return
				}
				c.VMDefaults.DiskBytes = Sourced[int64]{Value: n, Source: SourceConfig, File: d.file}
			}},

		{Key: Key{Name: "file_sync", Type: typeTables, Default: "[]",
			Doc: "Host files or directories copied into each new VM's disk at creation, one [[file_sync]] entry each. Host paths must stay inside the owner's home (symlinks included)."},
			apply: applyFileSync},
		{Key: Key{Name: "file_sync[].host", Type: "path", Default: "required",
			Doc: "Host file or directory: ~/... or an absolute path inside the owner's home."},
			entry: entryString(func(e *FileSync, s, home string) error {
				p, err := hostPath(s, home)
				if err != nil {
					return err
				}
				e.Host, e.HostPath = s, p
				return nil
			})},
		{Key: Key{Name: "file_sync[].guest", Type: "string", Default: "required",
			Doc: `Destination in the guest: ~/... or /root/... (the guest user is root), without ".." components.`},
			entry: entryString(func(e *FileSync, s, _ string) error {
				p, err := guestPath(s)
				if err != nil {
					return err
				}
				e.Guest, e.GuestPath = s, p
				return nil
			})},
		{Key: Key{Name: "file_sync[].mode", Type: "string", Default: "unset",
			Doc: `Permission bits of the copied file in octal, such as "0600" or "0755" (0 to 0777).`},
			entry: entryString(func(e *FileSync, s, _ string) error {
				m, err := parseMode(s)
				if err != nil {
					return err
				}
				e.Mode, e.ModeSet = m, true
				return nil
			})},
	}
}
