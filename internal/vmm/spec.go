// Package vmm is the hypervisor seam: a pure description of a VM (Spec)
// that a Backend turns into a running VMM process (Machine), and the
// supervision of that process across daemon restarts (Record, Adopt).
// Backends live below it: qemu/ today, firecracker/ later.
package vmm

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Limits the Spec is checked against.
const (
	// MaxSocketPath is the longest unix socket path: sun_path is 108
	// bytes including the terminating NUL.
	MaxSocketPath = 107
	// MaxSocketName is the longest file name a backend may give a control
	// socket inside RunDir, so that Validate can vouch for RunDir alone.
	MaxSocketName = 16
	// MaxSerial is the longest disk serial: virtio-blk's ID is 20 bytes.
	MaxSerial = 20
	// MaxCmdline is x86's COMMAND_LINE_SIZE less the NUL.
	MaxCmdline = 2047
	MaxVCPU    = 255
	MinMemory  = 128     // MiB: a distribution kernel with an initramfs
	MaxMemory  = 1 << 20 // MiB
	MaxDisks   = 16      // PCI slots on q35 run out not far above
)

// Spec is a VM as the hypervisor sees it. It is pure data: building one
// touches nothing, and every backend takes the same Spec.
type Spec struct {
	Name      string // VM name (a DNS label), for logs
	ID        string // short unique id, used in file names
	VCPU      int
	MemoryMiB int
	// Kernel is a bzImage for QEMU, an ELF vmlinux for Firecracker.
	Kernel  string
	Initrd  string // optional
	Cmdline string
	// Disks in order. The guest finds them by serial where the backend
	// can set one (QEMU), else by position (Firecracker): see Guest.
	Disks []Disk
	NIC   *NIC // optional
	// AgentSocket is the host unix socket the guest agent channel is
	// exposed on.
	AgentSocket string
	// ConsoleLog receives the serial console (appended to).
	ConsoleLog string
	// RunDir holds the VMM's control sockets, pid file and log.
	RunDir string
	Accel  string // AccelKVM or AccelTCG
}

// Guest is how a backend's guests find their devices, which the kernel
// command line has to tell them.
type Guest struct {
	// DisksByOrder: the VMM cannot give disks serials, and the guest sees
	// Spec.Disks as vda, vdb, ... in order.
	DisksByOrder bool
	// AgentVsockPort, when set, makes the agent channel vsock on this guest
	// port, reached through the host socket Spec.AgentSocket (Firecracker's
	// hybrid vsock). Zero means a virtio-serial port on AgentSocket.
	AgentVsockPort uint32
	// ExitOnReboot: the VMM process ends when the guest reboots but not
	// when it powers off (Firecracker on x86, which has no ACPI power-off
	// to act on), so a stop asks the guest to reboot after syncing.
	ExitOnReboot bool
}

// GuestConventions is implemented by backends whose guests differ from the
// default (disks by serial, agent on virtio-serial: QEMU).
type GuestConventions interface {
	Guest() Guest
}

// GuestOf returns b's guest conventions.
func GuestOf(b Backend) Guest {
	if g, ok := b.(GuestConventions); ok {
		return g.Guest()
	}
	return Guest{}
}

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// Disk is a raw disk image.
type Disk struct {
	Path     string
	ReadOnly bool
	// Serial names the disk to the guest (/sys/block/vdX/serial), e.g.
	// "banger-root".
	Serial string
}

// NIC is a network interface backed by a host tap.
type NIC struct {
	// Tap is the tap's name. The VMM opens it by name unless FD is set.
	Tap string
	MAC string
	// FD is an already-open tap (from the root helper): an unprivileged
	// VMM cannot open /dev/net/tun itself when the device is 0600 root.
	// When set it is used instead of opening Tap, and Tap is only a label.
	FD *os.File
}

var (
	nameRe   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	idRe     = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	serialRe = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	tapRe    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,15}$`)
)

// Validate checks every field and reports all problems in one error.
func (s Spec) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if !nameRe.MatchString(s.Name) {
		bad("name %q is not a DNS label (a-z, 0-9, '-', at most 63)", s.Name)
	}
	if !idRe.MatchString(s.ID) {
		bad("id %q must be 1-32 of a-z, 0-9, '-'", s.ID)
	}
	if s.VCPU < 1 || s.VCPU > MaxVCPU {
		bad("vcpu %d out of range 1-%d", s.VCPU, MaxVCPU)
	}
	if s.MemoryMiB < MinMemory || s.MemoryMiB > MaxMemory {
		bad("memory %d MiB out of range %d-%d", s.MemoryMiB, MinMemory, MaxMemory)
	}
	if err := checkPath("kernel", s.Kernel); err != nil {
		errs = append(errs, err)
	}
	if s.Initrd != "" {
		if err := checkPath("initrd", s.Initrd); err != nil {
			errs = append(errs, err)
		}
	}
	if len(s.Cmdline) > MaxCmdline {
		bad("kernel command line is %d bytes, at most %d", len(s.Cmdline), MaxCmdline)
	}
	if strings.ContainsAny(s.Cmdline, "\x00\n") {
		bad("kernel command line contains a NUL or newline")
	}
	if len(s.Disks) > MaxDisks {
		bad("%d disks, at most %d", len(s.Disks), MaxDisks)
	}
	serials := map[string]bool{}
	for i, d := range s.Disks {
		if err := checkPath(fmt.Sprintf("disk %d", i), d.Path); err != nil {
			errs = append(errs, err)
		}
		switch {
		case d.Serial == "":
			bad("disk %d: no serial", i)
		case len(d.Serial) > MaxSerial:
			bad("disk %d: serial %q is longer than %d", i, d.Serial, MaxSerial)
		case !serialRe.MatchString(d.Serial):
			bad("disk %d: serial %q may only hold A-Z, a-z, 0-9, '.', '_', '-'", i, d.Serial)
		case serials[d.Serial]:
			bad("disk %d: serial %q used twice", i, d.Serial)
		}
		serials[d.Serial] = true
	}
	if s.NIC != nil {
		if err := s.NIC.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := checkPath("agent socket", s.AgentSocket); err != nil {
		errs = append(errs, err)
	} else if len(s.AgentSocket) > MaxSocketPath {
		bad("agent socket %s is %d bytes, a unix socket path holds at most %d", s.AgentSocket, len(s.AgentSocket), MaxSocketPath)
	}
	if err := checkPath("console log", s.ConsoleLog); err != nil {
		errs = append(errs, err)
	}
	if err := checkPath("run dir", s.RunDir); err != nil {
		errs = append(errs, err)
	} else if n := len(s.RunDir) + 1 + MaxSocketName; n > MaxSocketPath {
		bad("run dir %s is too long for the control sockets inside it: %d bytes of a unix socket path's %d (shorten the runtime directory)", s.RunDir, n, MaxSocketPath)
	}
	if s.Accel != AccelKVM && s.Accel != AccelTCG {
		bad("accel %q is neither %q nor %q", s.Accel, AccelKVM, AccelTCG)
	}
	if len(errs) > 0 {
		return fmt.Errorf("vm spec %q: %w", s.Name, join(errs))
	}
	return nil
}

func (n *NIC) validate() error {
	var errs []error
	if n.FD == nil && n.Tap == "" {
		errs = append(errs, errors.New("nic: neither a tap name nor an open tap"))
	}
	if n.Tap != "" && !tapRe.MatchString(n.Tap) {
		errs = append(errs, fmt.Errorf("nic: tap %q is not an interface name (1-15 of A-Z, a-z, 0-9, '.', '_', '-')", n.Tap))
	}
	hw, err := net.ParseMAC(n.MAC)
	switch {
	case err != nil || len(hw) != 6 || len(n.MAC) != 17:
		errs = append(errs, fmt.Errorf("nic: MAC %q is not of the form 52:54:00:12:34:56", n.MAC))
	case hw[0]&1 == 1:
		errs = append(errs, fmt.Errorf("nic: MAC %s is a multicast address", n.MAC))
	case string(hw) == "\x00\x00\x00\x00\x00\x00":
		errs = append(errs, fmt.Errorf("nic: MAC %s is all zeros", n.MAC))
	}
	return join(errs)
}

// checkPath wants an absolute path. Commas are refused because VMM
// command lines (QEMU's -drive, -chardev) use them as separators.
func checkPath(what, p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%s: no path", what)
	case !filepath.IsAbs(p):
		return fmt.Errorf("%s: %q is not an absolute path", what, p)
	case strings.ContainsAny(p, ",\x00\n"):
		return fmt.Errorf("%s: %q contains a comma, NUL or newline", what, p)
	}
	return nil
}

// join is errors.Join on one line, so the user sees one line.
func join(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return &joined{errs: errs, msg: strings.Join(msgs, "; ")}
}

type joined struct {
	errs []error
	msg  string
}

func (j *joined) Error() string   { return j.msg }
func (j *joined) Unwrap() []error { return j.errs }
