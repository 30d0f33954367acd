// Package qemu is the QEMU backend of the hypervisor seam: a vmm.Spec
// becomes a qemu-system-x86_64 process, watched through QMP.
//
// The machine type follows the accelerator. With KVM it is microvm, the
// Firecracker-like machine: virtio-mmio devices, no PCI, kvm-clock. Under
// TCG it is q35 with virtio-pci, because microvm hangs there in a fraction
// of boots (no HPET or ACPI PM timer to calibrate the TSC against; with
// KVM, kvm-clock gives the TSC frequency and this does not arise). The
// guest sees the same virtio devices either way, over a different
// transport: banger's initramfs loads both virtio_pci and virtio_mmio,
// finds disks by serial and the NIC by MAC, so nothing in the guest
// depends on the machine type.
package qemu

import (
	"path/filepath"
	"strconv"

	"github.com/banger/banger/internal/vmm"
)

// Files QEMU keeps in the VM's RunDir.
const (
	QMPSocketName = "qmp.sock"
	PIDFileName   = "qemu.pid"
	LogName       = "qemu.log"
)

// AgentPort is the virtio-serial port name of the agent channel; the guest
// finds it as /sys/class/virtio-ports/vportNpM/name (udev links it as
// /dev/virtio-ports/banger.agent).
const AgentPort = "banger.agent"

// tapFD is the descriptor an already-open tap has in QEMU: Start passes it
// as the first (and only) extra file.
const tapFD = 3

// Options are the choices Args makes that the Spec does not carry.
type Options struct {
	// Sandbox turns on QEMU's seccomp filter: no exec, no privilege
	// changes, no obsolete syscalls. Off only for QEMU builds without
	// seccomp.
	Sandbox bool
}

// QMPSocket is the VM's QMP socket.
func QMPSocket(runDir string) string { return filepath.Join(runDir, QMPSocketName) }

// PIDFile is the file QEMU writes (and locks) its pid into.
func PIDFile(runDir string) string { return filepath.Join(runDir, PIDFileName) }

// LogFile receives QEMU's own stdout and stderr.
func LogFile(runDir string) string { return filepath.Join(runDir, LogName) }

// Args builds QEMU's arguments (without the binary) for a valid spec.
func Args(spec vmm.Spec, opts Options) []string {
	a := []string{"-name", spec.Name}
	// virtio is the suffix of the virtio devices' names: -pci on q35,
	// -device (virtio-mmio) on microvm.
	virtio := "pci"
	if spec.Accel == vmm.AccelKVM {
		virtio = "device"
		a = append(a,
			// acpi=on (the default, spelled out because three things
			// rest on it): the guest finds its virtio-mmio devices in
			// the ACPI tables, as with Firecracker >= 1.8 (without ACPI,
			// QEMU would append virtio_mmio.device= to the command line,
			// which only kernels built with
			// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES honour, Debian's cloud
			// kernel not among them); a second IO-APIC gives 24
			// virtio-mmio transports instead of 8, room for MaxDisks
			// disks and the other devices; and system_powerdown reaches
			// the guest as an ACPI event.
			// rtc=on: under KVM the default is off, and the guest would
			// have no /dev/rtc0 (its clock still comes from kvm-clock).
			// isa-serial=on: the console on ttyS0, where -serial points.
			// pit and pic stay on: turning them off is safe only on
			// hosts whose CPUs have TSC-deadline timers.
			// smm=off: never used; off, to shrink what a guest can reach.
			"-machine", "microvm,acpi=on,rtc=on,isa-serial=on,pit=on,pic=on,smm=off",
			// Modern virtio (1.0) over virtio-mmio version 2, as
			// Firecracker and virtio-pci on q35 offer, not QEMU's
			// default legacy virtio-mmio.
			"-global", "virtio-mmio.force-legacy=false",
			"-accel", "kvm", "-cpu", "host",
		)
	} else {
		a = append(a,
			// SMM and the VMware port are never used: off, to shrink
			// what a guest can reach.
			"-machine", "q35,smm=off,vmport=off",
			// max: every feature TCG emulates, so guest binaries built
			// for x86-64-v2 and later run.
			"-accel", "tcg,thread=multi", "-cpu", "max",
		)
	}
	a = append(a,
		"-smp", strconv.Itoa(spec.VCPU),
		"-m", strconv.Itoa(spec.MemoryMiB)+"M",
		"-nodefaults", "-no-user-config",
		"-display", "none",
		// A guest reboot ends QEMU; banger restarts a VM as stop + start.
		"-no-reboot",
		"-rtc", "base=utc",
		"-msg", "timestamp=on",
	)
	if opts.Sandbox {
		a = append(a, "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny")
	}
	a = append(a, "-kernel", spec.Kernel)
	if spec.Initrd != "" {
		a = append(a, "-initrd", spec.Initrd)
	}
	a = append(a,
		"-append", spec.Cmdline,
		"-chardev", "file,id=con,path="+spec.ConsoleLog+",append=on",
		"-serial", "chardev:con",
		"-qmp", "unix:"+QMPSocket(spec.RunDir)+",server=on,wait=off",
		"-pidfile", PIDFile(spec.RunDir),
		// Guests would otherwise wait on entropy: TCG is slow to gather it.
		"-object", "rng-random,id=rng0,filename=/dev/urandom",
		"-device", "virtio-rng-"+virtio+",rng=rng0",
		// No vhost-vsock on many hosts: the agent channel is a
		// virtio-serial port on a host unix socket, present on every QEMU.
		"-device", "virtio-serial-"+virtio+",id=vser0",
		"-chardev", "socket,id=agent,path="+spec.AgentSocket+",server=on,wait=off",
		"-device", "virtserialport,bus=vser0.0,chardev=agent,name="+AgentPort,
	)
	for i, d := range spec.Disks {
		id := "d" + strconv.Itoa(i)
		// format=raw: never probe, or a guest could write a qcow2 header
		// into its disk and have QEMU follow a backing file next time.
		drive := "file=" + d.Path + ",if=none,id=" + id + ",format=raw,cache=writeback"
		if d.ReadOnly {
			drive += ",readonly=on"
		} else {
			// The guest's fstrim punches holes in the sparse image.
			drive += ",readonly=off,discard=unmap"
		}
		a = append(a, "-drive", drive, "-device", "virtio-blk-"+virtio+",drive="+id+",serial="+d.Serial)
	}
	if n := spec.NIC; n != nil {
		netdev := "tap,id=n0,ifname=" + n.Tap + ",script=no,downscript=no"
		if n.FD != nil {
			netdev = "tap,id=n0,fd=" + strconv.Itoa(tapFD)
		}
		a = append(a, "-netdev", netdev, "-device", "virtio-net-"+virtio+",netdev=n0,mac="+n.MAC)
	}
	return a
}
