package host

import (
	"fmt"
	"os"
)

// Choice is the hypervisor banger will use and why, in one line for the
// user.
type Choice struct {
	Backend string // "firecracker" or "qemu"
	Accel   string // "kvm" or "tcg"
	Reason  string
	// Version is the chosen VMM's version ("1.16.1").
	Version string `json:",omitempty"`
}

// MinFirecracker is the oldest Firecracker banger drives: every API
// request it sends is valid from 1.0 on (1.0 made machine-config's smt
// optional and vsock_id deprecated, which banger leaves out).
const MinFirecracker = "1.0.0"

// FirecrackerACPI is the first Firecracker whose x86 guests find their
// virtio-mmio devices through ACPI, so that a stock distribution kernel
// sees its disks. Before it, devices are announced only as
// virtio_mmio.device= kernel parameters, which a kernel honours only when
// built with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES (banger's init passes them
// on to a virtio_mmio module it loads).
const FirecrackerACPI = "1.8.0"

// FirecrackerKernelProblem says why Firecracker version cannot boot a
// kernel, given whether the kernel has CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES;
// "" when it can.
func FirecrackerKernelProblem(version string, mmioCmdline bool) string {
	if mmioCmdline || AtLeast(version, FirecrackerACPI) {
		return ""
	}
	return fmt.Sprintf("firecracker %s (before %s) announces disks only as virtio_mmio.device= kernel parameters, and this kernel was built without CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, so its guests would find no disk", version, FirecrackerACPI)
}

const (
	installQEMU        = "install qemu-system-x86 (apt-get install qemu-system-x86)"
	installFirecracker = "install Firecracker >= " + FirecrackerACPI + " from https://github.com/firecracker-microvm/firecracker/releases or set firecracker_bin"
)

// EnvFirecrackerWithoutKVM, set to 1, makes an explicit hypervisor =
// "firecracker" skip the KVM check: for tests that run a stand-in
// firecracker on hosts without KVM. It is never honoured for "auto".
const EnvFirecrackerWithoutKVM = "BANGER_TEST_FIRECRACKER_WITHOUT_KVM"

// WithoutKVMForTests returns kvm as usable, and true, when the test switch
// EnvFirecrackerWithoutKVM applies to setting; kvm unchanged otherwise.
func WithoutKVMForTests(setting string, kvm KVM) (KVM, bool) {
	if setting != "firecracker" || kvm.Usable || os.Getenv(EnvFirecrackerWithoutKVM) != "1" {
		return kvm, false
	}
	return KVM{Present: kvm.Present, Usable: true, Reason: EnvFirecrackerWithoutKVM + "=1 (tests only): KVM not checked"}, true
}

// Choose picks the hypervisor from the configured setting ("auto", "" for
// auto, "firecracker" or "qemu") and what was found on the host.
func Choose(setting string, kvm KVM, firecracker, qemu Tool) (Choice, error) {
	fcErr := firecrackerProblem(firecracker)
	qemuOK := qemu.Err == nil && qemu.Path != ""
	fcPreACPI := fcErr == "" && !AtLeast(firecracker.Version, FirecrackerACPI)
	switch setting {
	case "", "auto":
		switch {
		case kvm.Usable && fcErr == "" && !fcPreACPI:
			return Choice{Backend: "firecracker", Accel: "kvm", Version: firecracker.Version, Reason: fmt.Sprintf("KVM usable, firecracker %s found: Firecracker", firecracker.Version)}, nil
		case kvm.Usable && fcPreACPI && qemuOK:
			return Choice{Backend: "qemu", Accel: "kvm", Version: qemu.Version, Reason: fmt.Sprintf("KVM usable but firecracker %s is older than %s and boots only kernels with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES (set hypervisor = \"firecracker\" to use it with one): QEMU with KVM", firecracker.Version, FirecrackerACPI)}, nil
		case kvm.Usable && fcPreACPI:
			return Choice{Backend: "firecracker", Accel: "kvm", Version: firecracker.Version, Reason: fmt.Sprintf("KVM usable, firecracker %s found, no QEMU: Firecracker (before %s: it needs kernels with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES)", firecracker.Version, FirecrackerACPI)}, nil
		case kvm.Usable && qemuOK:
			return Choice{Backend: "qemu", Accel: "kvm", Version: qemu.Version, Reason: fmt.Sprintf("KVM usable but %s: QEMU with KVM", fcErr)}, nil
		case kvm.Usable:
			return Choice{}, fmt.Errorf("choose hypervisor: KVM is usable but %s and %s; %s, or %s",
				fcErr, qemuProblem(qemu), installFirecracker, installQEMU)
		case qemuOK:
			return Choice{Backend: "qemu", Accel: "tcg", Version: qemu.Version, Reason: fmt.Sprintf("no usable KVM (%s): QEMU software emulation, expect slow boots", kvm.Reason)}, nil
		}
		return Choice{}, fmt.Errorf("choose hypervisor: no usable KVM (%s) and %s; %s", kvm.Reason, qemuProblem(qemu), installQEMU)
	case "firecracker":
		if !kvm.Usable {
			return Choice{}, fmt.Errorf("choose hypervisor: firecracker needs KVM: %s; run banger on a host with KVM, or set the hypervisor to qemu or auto", kvm.Reason)
		}
		if fcErr != "" {
			return Choice{}, fmt.Errorf("choose hypervisor: %s; %s", fcErr, installFirecracker)
		}
		why := fmt.Sprintf("firecracker %s as configured", firecracker.Version)
		if fcPreACPI {
			why += fmt.Sprintf(" (before %s: it needs kernels with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES)", FirecrackerACPI)
		}
		return Choice{Backend: "firecracker", Accel: "kvm", Version: firecracker.Version, Reason: why}, nil
	case "qemu":
		if !qemuOK {
			return Choice{}, fmt.Errorf("choose hypervisor: %s; %s", qemuProblem(qemu), installQEMU)
		}
		if kvm.Usable {
			return Choice{Backend: "qemu", Accel: "kvm", Version: qemu.Version, Reason: "QEMU with KVM as configured"}, nil
		}
		return Choice{Backend: "qemu", Accel: "tcg", Version: qemu.Version, Reason: fmt.Sprintf("QEMU as configured, no usable KVM (%s): software emulation, expect slow boots", kvm.Reason)}, nil
	}
	return Choice{}, fmt.Errorf("choose hypervisor: unknown setting %q, want auto, firecracker or qemu", setting)
}

// firecrackerProblem says why firecracker cannot be used, or "".
func firecrackerProblem(t Tool) string {
	switch {
	case t.Err != nil:
		return fmt.Sprintf("no usable firecracker (%v)", t.Err)
	case t.Path == "":
		return "no firecracker binary"
	case !AtLeast(t.Version, MinFirecracker):
		return fmt.Sprintf("firecracker %s at %s is older than %s", t.Version, t.Path, MinFirecracker)
	}
	return ""
}

func qemuProblem(t Tool) string {
	name := t.Name
	if name == "" {
		name = "qemu-system-x86_64"
	}
	if t.Err != nil {
		return fmt.Sprintf("no usable %s (%v)", name, t.Err)
	}
	return "no " + name
}
