// Package boot is banger's in-guest init. banger-agent runs Main when the
// kernel starts it as PID 1 from banger's initramfs: it loads the kernel
// modules packed there, mounts the read-only image under a per-VM writable
// layer as an overlay root, configures the network and hostname from the
// kernel command line, installs the agent into the new root's /run, and
// hands over to the image's own init.
//
// # Kernel command line
//
// The host passes everything as banger.* parameters (Params.Cmdline builds
// them, ParseCmdline reads them; other parameters are left alone):
//
//	banger.image=DISK      read-only shared image (ext4), mounted at /image (required)
//	banger.layer=DISK      per-VM writable disk (ext4): overlay upper and work dirs,
//	                       and Docker's data (required)
//	banger.work=DISK       work disk (ext4), mounted on /root of the new root
//	banger.ip=ADDR/PREFIX  IPv4 address of the interface named by banger.mac
//	banger.gw=ADDR         default gateway
//	banger.mac=MAC         MAC address of the interface to configure
//	banger.dns=ADDR[,ADDR] name servers written to /etc/resolv.conf
//	banger.hostname=NAME   host name (a DNS label)
//	banger.agent=KIND      agent channel: "virtio-serial" or "vsock:PORT"
//	banger.init=PATH       init to run in the new root (default /sbin/init)
//	banger.debug=1         log every step on the console
//
// A DISK is either "serial:S", the virtio disk whose serial is S
// (/sys/block/vd*/serial; QEMU's -device virtio-blk-pci,serial=S), or a
// kernel disk name such as "vdb", for VMMs that cannot set serials
// (Firecracker names disks vda, vdb, ... in the order they are attached).
// Serials are the robust choice where available: disk order under QEMU
// depends on PCI slots.
//
// Parameters for loadable modules ("virtio_mmio.device=...") are passed to
// the module when it is loaded, since the kernel applies module.param= only
// to built-in code.
package boot

import (
	"fmt"
	"net"
	"net/netip"
	"path"
	"strings"
)

// Paths inside the initramfs that the host side (package initramfs) fills.
const (
	// InitPath is the init binary (banger-agent).
	InitPath = "/init"
	// ModulesList lists the modules to load, one name per line, in order.
	ModulesList = "/etc/banger/modules"
	// ModulesDir holds <version>/<name>.ko for each listed module.
	ModulesDir = "/lib/modules"
)

// Agent channel kinds.
const (
	AgentVirtioSerial = "virtio-serial"
	agentVsockPrefix  = "vsock:"
)

// AgentVsock is the channel kind for a vsock listener on port.
func AgentVsock(port uint32) string { return fmt.Sprintf("%s%d", agentVsockPrefix, port) }

// Params are banger's kernel command-line parameters.
type Params struct {
	Image    Disk
	Layer    Disk
	Work     Disk // zero: no work disk
	Address  netip.Prefix
	Gateway  netip.Addr
	MAC      net.HardwareAddr
	DNS      []netip.Addr
	Hostname string
	// Agent is AgentVirtioSerial or AgentVsock(port); empty means the
	// agent picks its default.
	Agent string
	// Init is the program to run in the new root; empty means /sbin/init.
	Init  string
	Debug bool
}

// Disk names a guest block device: by serial, or by kernel name.
type Disk struct {
	Serial string // set: the vd* disk with this serial
	Name   string // else: this kernel name, "vda"
}

// IsZero reports whether no disk is named.
func (d Disk) IsZero() bool { return d.Serial == "" && d.Name == "" }

func (d Disk) String() string {
	if d.Serial != "" {
		return "serial:" + d.Serial
	}
	return d.Name
}

// ParseDisk parses "serial:S" or a kernel disk name.
func ParseDisk(s string) (Disk, error) {
	if serial, ok := strings.CutPrefix(s, "serial:"); ok {
		// virtio-blk serials are at most 20 bytes (VIRTIO_BLK_ID_BYTES).
		if serial == "" || len(serial) > 20 || !printableWord(serial) {
			return Disk{}, fmt.Errorf("disk %q: serial must be 1-20 printable characters without spaces or commas", s)
		}
		return Disk{Serial: serial}, nil
	}
	if !validDiskName(s) {
		return Disk{}, fmt.Errorf("disk %q: want serial:S or a virtio disk name like vdb", s)
	}
	return Disk{Name: s}, nil
}

func validDiskName(s string) bool {
	rest, ok := strings.CutPrefix(s, "vd")
	if !ok || rest == "" || len(rest) > 3 {
		return false
	}
	for _, r := range rest {
		if r < 'a' || r > 'z' {
			return false
		}
	}
	return true
}

func printableWord(s string) bool {
	for _, r := range s {
		if r <= ' ' || r > '~' || r == ',' || r == '"' {
			return false
		}
	}
	return true
}

// Cmdline renders p as kernel command-line parameters, in a fixed order.
func (p Params) Cmdline() string {
	var f []string
	add := func(k, v string) {
		if v != "" {
			f = append(f, "banger."+k+"="+v)
		}
	}
	add("image", p.Image.String())
	add("layer", p.Layer.String())
	add("work", p.Work.String())
	if p.Address.IsValid() {
		add("ip", p.Address.String())
	}
	if p.Gateway.IsValid() {
		add("gw", p.Gateway.String())
	}
	if len(p.MAC) > 0 {
		add("mac", p.MAC.String())
	}
	var dns []string
	for _, a := range p.DNS {
		dns = append(dns, a.String())
	}
	add("dns", strings.Join(dns, ","))
	add("hostname", p.Hostname)
	add("agent", p.Agent)
	add("init", p.Init)
	if p.Debug {
		add("debug", "1")
	}
	return strings.Join(f, " ")
}

// Validate checks what a boot needs: the disks, a coherent network, and
// well-formed names.
func (p Params) Validate() error {
	if p.Image.IsZero() {
		return fmt.Errorf("banger.image is required")
	}
	if p.Layer.IsZero() {
		return fmt.Errorf("banger.layer is required")
	}
	seen := map[Disk]string{}
	for _, d := range []struct {
		key  string
		disk Disk
	}{{"image", p.Image}, {"layer", p.Layer}, {"work", p.Work}} {
		if d.disk.IsZero() {
			continue
		}
		if other, dup := seen[d.disk]; dup {
			return fmt.Errorf("banger.%s and banger.%s name the same disk %s", other, d.key, d.disk)
		}
		seen[d.disk] = d.key
	}
	if p.Address.IsValid() {
		if !p.Address.Addr().Is4() {
			return fmt.Errorf("banger.ip %s: only IPv4 is supported", p.Address)
		}
		if len(p.MAC) == 0 {
			return fmt.Errorf("banger.ip needs banger.mac to find the interface")
		}
	}
	if p.Gateway.IsValid() {
		if !p.Address.IsValid() {
			return fmt.Errorf("banger.gw needs banger.ip")
		}
		if !p.Gateway.Is4() || !p.Address.Masked().Contains(p.Gateway) {
			return fmt.Errorf("banger.gw %s is not inside %s", p.Gateway, p.Address.Masked())
		}
	}
	if p.Hostname != "" && !validHostname(p.Hostname) {
		return fmt.Errorf("banger.hostname %q is not a DNS label", p.Hostname)
	}
	if p.Agent != "" && p.Agent != AgentVirtioSerial {
		port, ok := strings.CutPrefix(p.Agent, agentVsockPrefix)
		var n uint32
		if _, err := fmt.Sscanf(port, "%d", &n); !ok || err != nil || fmt.Sprint(n) != port || n == 0 {
			return fmt.Errorf("banger.agent %q: want %s or vsock:PORT", p.Agent, AgentVirtioSerial)
		}
	}
	if p.Init != "" && (!path.IsAbs(p.Init) || path.Clean(p.Init) != p.Init || !printableWord(p.Init)) {
		return fmt.Errorf("banger.init %q: want a clean absolute path", p.Init)
	}
	return nil
}

// VsockPort returns the port of a vsock agent channel.
func (p Params) VsockPort() (uint32, bool) {
	port, ok := strings.CutPrefix(p.Agent, agentVsockPrefix)
	if !ok {
		return 0, false
	}
	var n uint32
	if _, err := fmt.Sscanf(port, "%d", &n); err != nil {
		return 0, false
	}
	return n, true
}

func validHostname(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// ParseCmdline reads banger's parameters from a kernel command line (the
// contents of /proc/cmdline) and validates them. Unknown banger.* keys are
// errors, so a typo on the host fails the boot instead of being ignored.
func ParseCmdline(cmdline string) (Params, error) {
	var p Params
	for _, arg := range splitCmdline(cmdline) {
		key, val, _ := strings.Cut(arg.text, "=")
		key, ok := strings.CutPrefix(key, "banger.")
		if !ok {
			continue
		}
		if err := p.set(key, val); err != nil {
			return Params{}, fmt.Errorf("kernel command line: %w", err)
		}
	}
	if err := p.Validate(); err != nil {
		return Params{}, fmt.Errorf("kernel command line: %w", err)
	}
	return p, nil
}

func (p *Params) set(key, val string) error {
	var err error
	switch key {
	case "image":
		p.Image, err = ParseDisk(val)
	case "layer":
		p.Layer, err = ParseDisk(val)
	case "work":
		p.Work, err = ParseDisk(val)
	case "ip":
		p.Address, err = netip.ParsePrefix(val)
	case "gw":
		p.Gateway, err = netip.ParseAddr(val)
	case "mac":
		p.MAC, err = net.ParseMAC(val)
		if err == nil && len(p.MAC) != 6 {
			err = fmt.Errorf("not an Ethernet address")
		}
	case "dns":
		p.DNS = nil
		for _, s := range strings.Split(val, ",") {
			a, perr := netip.ParseAddr(s)
			if perr != nil {
				return fmt.Errorf("banger.dns: %w", perr)
			}
			p.DNS = append(p.DNS, a)
		}
	case "hostname":
		p.Hostname = val
	case "agent":
		p.Agent = val
	case "init":
		p.Init = val
	case "debug":
		p.Debug = val == "1" || val == "" || val == "true"
	default:
		return fmt.Errorf("unknown parameter banger.%s", key)
	}
	if err != nil {
		return fmt.Errorf("banger.%s: %w", key, err)
	}
	return nil
}

// cmdArg is one parameter of a kernel command line: its text without the
// quotes the kernel strips, and raw as written.
type cmdArg struct{ text, raw string }

// splitCmdline splits a command line the way the kernel's next_arg does:
// on spaces, except inside double quotes, which are dropped from the text.
func splitCmdline(s string) []cmdArg {
	var args []cmdArg
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return args
		}
		start := i
		quoted := false
		var text strings.Builder
		for ; i < len(s); i++ {
			c := s[i]
			if c == '"' {
				quoted = !quoted
				continue
			}
			if !quoted && isSpace(c) {
				break
			}
			text.WriteByte(c)
		}
		args = append(args, cmdArg{text: text.String(), raw: s[start:i]})
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' }

// ModuleParams returns the parameters the command line gives module
// ("virtio_mmio.device=4K@0xd0000000:5" gives "device=4K@0xd0000000:5"),
// space-separated in command-line order, quotes kept, ready for
// finit_module. '-' and '_' in the module name match each other.
func ModuleParams(cmdline, module string) string {
	module = strings.ReplaceAll(module, "-", "_")
	var out []string
	for _, arg := range splitCmdline(cmdline) {
		// The module name ends at the first '.' before any '='.
		name, rest, ok := strings.Cut(arg.raw, ".")
		if !ok || strings.Contains(name, "=") || strings.Contains(name, `"`) {
			continue
		}
		if strings.ReplaceAll(name, "-", "_") == module && rest != "" && rest[0] != '=' {
			out = append(out, rest)
		}
	}
	return strings.Join(out, " ")
}
