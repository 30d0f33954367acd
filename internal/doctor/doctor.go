// Package doctor checks that a host can run banger and says, for each
// problem, the one thing to do about it.
package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/client"
	"github.com/banger/banger/internal/config"
	"github.com/banger/banger/internal/host"
	"github.com/banger/banger/internal/install"
	"github.com/banger/banger/internal/paths"
	"github.com/miekg/dns"
)

// Status is a check's verdict.
type Status string

const (
	Pass Status = "pass"
	Warn Status = "warn"
	// Fail means `vm run` cannot work until it is fixed.
	Fail Status = "fail"
)

// Check is one line of the report.
type Check struct {
	Group  string `json:"group"`
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Default is one effective [vm_defaults] value and where it came from.
type Default struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

// Report is everything doctor found.
type Report struct {
	Checks     []Check     `json:"checks"`
	Hypervisor host.Choice `json:"hypervisor"`
	Defaults   []Default   `json:"vm_defaults,omitempty"`
}

// Blocking reports whether any check failed.
func (r Report) Blocking() bool {
	for _, c := range r.Checks {
		if c.Status == Fail {
			return true
		}
	}
	return false
}

// Env is what doctor looks at.
type Env struct {
	Layout paths.Layout
	Home   string
	Client *client.Client
	// Probe lets tests replace the host probes; nil means the real ones.
	Probe *Probes
}

// Probes are the host facts doctor asks for.
type Probes struct {
	KVM     func(ctx context.Context) host.KVM
	Look    func(ctx context.Context, name, override string) host.Tool
	Arch    func() string
	Systemd func() bool
}

func realProbes() *Probes {
	return &Probes{KVM: host.ProbeKVM, Look: host.Look, Arch: host.Arch, Systemd: host.SystemdIsPID1}
}

type reporter struct{ r *Report }

func (p reporter) add(group, name string, s Status, detail, fix string) {
	p.r.Checks = append(p.r.Checks, Check{Group: group, Name: name, Status: s, Detail: detail, Fix: fix})
}

// Run performs every check.
func Run(ctx context.Context, env Env) Report {
	pr := env.Probe
	if pr == nil {
		pr = realProbes()
	}
	var r Report
	add := reporter{&r}.add

	cfg, cfgErr := config.Load(config.LoadOptions{Files: config.Files(env.Layout, paths.User{Home: env.Home}), Home: env.Home, Host: config.DetectHost()})
	if cfgErr != nil {
		add("config", "config files", Fail, oneLine(cfgErr), "fix the key named above, or remove it to get the default")
		cfg = config.Default(config.DetectHost(), env.Home)
	} else if len(cfg.Files) == 0 {
		add("config", "config files", Pass, "none (all defaults); optional: "+paths.User{Home: env.Home}.ConfigFile(), "")
	} else {
		add("config", "config files", Pass, strings.Join(cfg.Files, ", "), "")
	}

	// Host.
	arch := pr.Arch()
	if strings.HasPrefix(arch, "amd64") {
		add("host", "architecture", Pass, arch, "")
	} else {
		add("host", "architecture", Fail, arch, "banger supports x86_64 (amd64) hosts only")
	}
	kvm := pr.KVM(ctx)
	switch {
	case kvm.Usable:
		add("host", "/dev/kvm", Pass, "present, writable, runs a test guest", "")
	case kvm.Present:
		add("host", "/dev/kvm", Warn, kvm.Reason, "QEMU software emulation will be used (slow); for speed use a host with working KVM")
	default:
		add("host", "/dev/kvm", Warn, kvm.Reason, "QEMU software emulation will be used (slow); enable virtualization or use a host with KVM")
	}
	if fi, err := os.Stat("/dev/net/tun"); err == nil {
		// The VMM runs as the owner and opens its tap through this device.
		if fi.Mode().Perm()&0o006 == 0o006 {
			add("host", "/dev/net/tun", Pass, "present, usable by unprivileged users", "")
		} else {
			add("host", "/dev/net/tun", Warn, fmt.Sprintf("mode %v: an unprivileged VMM cannot open taps", fi.Mode().Perm()),
				"start bangerd-root, which sets the mode Debian gives it (0666), or: chmod 0666 /dev/net/tun")
		}
	} else {
		add("host", "/dev/net/tun", Fail, "missing", "load the tun module: modprobe tun")
	}

	// Hypervisors.
	fc := pr.Look(ctx, "firecracker", cfg.FirecrackerBin)
	s, detail, fix := firecrackerCheck(fc)
	add("hypervisor", "firecracker", s, detail, fix)
	if cfg.JailerEnabled {
		s, detail, fix := jailerCheck(pr.Look(ctx, "jailer", cfg.JailerBin), fc)
		add("hypervisor", "jailer", s, detail, fix)
	}
	qemu := pr.Look(ctx, "qemu-system-x86_64", cfg.QEMUBin)
	if qemu.Err == nil {
		add("hypervisor", "qemu", Pass, qemu.Path+" "+qemu.Version, "")
	} else {
		add("hypervisor", "qemu", Warn, "not found", "apt-get install qemu-system-x86")
	}
	chooseKVM, _ := host.WithoutKVMForTests(cfg.Hypervisor, kvm)
	choice, err := host.Choose(cfg.Hypervisor, chooseKVM, fc, qemu)
	if err != nil {
		fix := api.HintOf(err)
		if fix == "" {
			fix = "apt-get install qemu-system-x86 (or install Firecracker on a host with KVM)"
		}
		add("hypervisor", "backend", Fail, oneLine(err), fix)
	} else {
		r.Hypervisor = choice
		s := Pass
		if choice.Accel != "kvm" {
			s = Warn
		}
		add("hypervisor", "backend", s, fmt.Sprintf("%s (%s): %s", choice.Backend, choice.Accel, choice.Reason), "")
	}

	// Tools banger runs.
	for _, t := range []struct{ name, why, pkg string }{
		{"mkfs.ext4", "VM disks", "e2fsprogs"},
		{"e2fsck", "VM disks", "e2fsprogs"},
		{"resize2fs", "VM disks", "e2fsprogs"},
		{"debugfs", "VM disks", "e2fsprogs"},
		{"debootstrap", "building the default image", "debootstrap"},
		{"ssh", "vm ssh and vm run", "openssh-client"},
		{"ssh-keygen", "the banger ssh key", "openssh-client"},
		{"git", "workspaces", "git"},
	} {
		tool := pr.Look(ctx, t.name, "")
		if tool.Err == nil {
			add("tools", t.name, Pass, tool.Path, "")
		} else {
			add("tools", t.name, Fail, "not found (needed for "+t.why+")", "apt-get install "+t.pkg)
		}
	}

	checkServices(ctx, env, pr, add)
	checkNetwork(ctx, env, cfg, add)

	if cfgErr == nil {
		d := cfg.VMDefaults
		src := func(s config.Source, file string) string {
			if file != "" {
				return string(s) + " (" + file + ")"
			}
			return string(s)
		}
		r.Defaults = []Default{
			{"vcpu", fmt.Sprint(d.VCPU.Value), src(d.VCPU.Source, d.VCPU.File)},
			{"memory_mib", fmt.Sprint(d.MemoryMiB.Value), src(d.MemoryMiB.Source, d.MemoryMiB.File)},
			{"disk_size", config.FormatSize(d.DiskBytes.Value), src(d.DiskBytes.Source, d.DiskBytes.File)},
		}
	}
	return r
}

// firecrackerCheck reports the Firecracker found and what its version
// means for guests.
func firecrackerCheck(fc host.Tool) (Status, string, string) {
	install := "install Firecracker >= " + host.FirecrackerACPI + " and set firecracker_bin"
	switch {
	case fc.Err != nil:
		return Warn, "not found", "optional: " + install + ", for fast VMs on KVM hosts"
	case !host.AtLeast(fc.Version, host.MinFirecracker):
		return Warn, fmt.Sprintf("%s %s: older than %s, not used", fc.Path, fc.Version, host.MinFirecracker), install
	case !host.AtLeast(fc.Version, host.FirecrackerACPI):
		return Warn, fmt.Sprintf("%s %s: before %s guests find their disks only through virtio_mmio.device= parameters, so only kernels built with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES boot (Debian's cloud kernel is not)", fc.Path, fc.Version, host.FirecrackerACPI),
			install + " to boot stock kernels"
	}
	return Pass, fmt.Sprintf("%s %s: guests find their devices through ACPI; kernels load as ELF vmlinux", fc.Path, fc.Version), ""
}

// jailerCheck reports the jailer that jailer_enabled asks for.
func jailerCheck(j, fc host.Tool) (Status, string, string) {
	switch {
	case j.Err != nil:
		return Fail, "jailer_enabled is set but there is no usable jailer: " + oneLine(j.Err), "install the jailer of your Firecracker release and set jailer_bin, or set jailer_enabled = false"
	case fc.Err == nil && j.Version != fc.Version:
		return Fail, fmt.Sprintf("%s %s does not match firecracker %s", j.Path, j.Version, fc.Version), "install the jailer and firecracker of one release"
	}
	return Pass, fmt.Sprintf("%s %s (jailer_enabled: Firecracker runs chrooted as the owner, launched by bangerd-root)", j.Path, j.Version), ""
}

func checkServices(ctx context.Context, env Env, pr *Probes, add func(string, string, Status, string, string)) {
	m, err := install.ReadMetadata(env.Layout.InstallFile())
	if err != nil {
		add("services", "install", Warn, oneLine(err), `sudo banger system install --owner "$USER"`)
	} else {
		add("services", "install", Pass, fmt.Sprintf("%s, owner %s (uid %d)", m.Version, m.OwnerUser, m.OwnerUID), "")
		if m.Systemd && pr.Systemd() {
			for _, u := range []string{paths.HelperUnit, paths.DaemonUnit} {
				if st := install.UnitState(ctx, u); st == "active" {
					add("services", u, Pass, st, "")
				} else {
					add("services", u, Fail, st, "sudo banger system restart; logs: journalctl -u "+strings.TrimSuffix(u, ".service"))
				}
			}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := env.Client.Status(cctx)
	if err != nil {
		add("services", "bangerd", Fail, oneLine(err), api.HintOf(err))
		return
	}
	add("services", "bangerd", Pass, fmt.Sprintf("%s on %s (pid %d)", st.Version.Version, st.Socket, st.PID), "")
	if st.Helper.Reachable {
		add("services", "bangerd-root", Pass, fmt.Sprintf("%s on %s", st.Helper.Version, st.Helper.Socket), "")
		var net struct {
			ForwardDrop []string `json:"forward_drop"`
		}
		if json.Unmarshal(st.Helper.Network, &net) == nil && len(net.ForwardDrop) > 0 {
			add("network", "forwarding", Warn, "forward chains with policy drop: "+strings.Join(net.ForwardDrop, ", ")+" (guests with --nat get no traffic through)",
				"allow the bridge in that chain, e.g. on Docker hosts: iptables -I DOCKER-USER -i banger0 -j ACCEPT; iptables -I DOCKER-USER -o banger0 -j ACCEPT")
		}
	} else {
		add("services", "bangerd-root", Fail, st.Helper.Error, "sudo banger system restart")
	}
}

func checkNetwork(ctx context.Context, env Env, cfg *config.Config, add func(string, string, Status, string, string)) {
	n := cfg.Network
	if link, err := netLink(n.Bridge); err == nil {
		add("network", "bridge", Pass, fmt.Sprintf("%s %s", n.Bridge, link), "")
	} else {
		add("network", "bridge", Pass, fmt.Sprintf("%s (%s) not created yet; it is made when the first VM starts", n.Bridge, n.CIDR), "")
	}
	if err := host.UDPFree(n.DNSAddr.String()); err == nil {
		add("network", "dns port", Pass, n.DNSAddr.String()+" free", "")
	} else if daemonServesDNS(ctx, n.DNSAddr) {
		add("network", "dns port", Pass, n.DNSAddr.String()+" (bangerd)", "")
	} else {
		add("network", "dns port", Warn, n.DNSAddr.String()+" is taken by another program", "set network.dns_addr to a free loopback port")
	}
}

// netLink describes an existing interface from sysfs, without privilege.
func netLink(name string) (string, error) {
	b, err := os.ReadFile("/sys/class/net/" + name + "/operstate")
	if err != nil {
		return "", err
	}
	return "(" + strings.TrimSpace(string(b)) + ")", nil
}

// daemonServesDNS reports whether something answers DNS on addr: the .vm
// server of a running bangerd.
func daemonServesDNS(ctx context.Context, addr netip.AddrPort) bool {
	m := new(dns.Msg)
	m.SetQuestion("banger-doctor.vm.", dns.TypeA)
	c := &dns.Client{Timeout: time.Second}
	_, _, err := c.ExchangeContext(ctx, m, addr.String())
	return err == nil
}

func oneLine(err error) string {
	var ae *api.Error
	if errors.As(err, &ae) {
		return strings.ReplaceAll(ae.Message, "\n", "; ")
	}
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
