package host

import "fmt"

// Choice is the hypervisor banger will use and why, in one line for the
// user.
type Choice struct {
	Backend string // "firecracker" or "qemu"
	Accel   string // "kvm" or "tcg"
	Reason  string
}

// MinFirecracker is the oldest Firecracker banger drives: from 1.8 on, x86
// guests find virtio-mmio devices through ACPI, so a stock distribution
// kernel (no CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES) sees its disks.
const MinFirecracker = "1.8.0"

const (
	installQEMU        = "install qemu-system-x86 (apt-get install qemu-system-x86)"
	installFirecracker = "install Firecracker >= " + MinFirecracker + " from https://github.com/firecracker-microvm/firecracker/releases or set firecracker_bin"
)

// Choose picks the hypervisor from the configured setting ("auto", "" for
// auto, "firecracker" or "qemu") and what was found on the host.
func Choose(setting string, kvm KVM, firecracker, qemu Tool) (Choice, error) {
	fcErr := firecrackerProblem(firecracker)
	qemuOK := qemu.Err == nil && qemu.Path != ""
	switch setting {
	case "", "auto":
		switch {
		case kvm.Usable && fcErr == "":
			return Choice{Backend: "firecracker", Accel: "kvm", Reason: fmt.Sprintf("KVM usable, firecracker %s found: Firecracker", firecracker.Version)}, nil
		case kvm.Usable && qemuOK:
			return Choice{Backend: "qemu", Accel: "kvm", Reason: fmt.Sprintf("KVM usable but %s: QEMU with KVM", fcErr)}, nil
		case kvm.Usable:
			return Choice{}, fmt.Errorf("choose hypervisor: KVM is usable but %s and %s; %s, or %s",
				fcErr, qemuProblem(qemu), installFirecracker, installQEMU)
		case qemuOK:
			return Choice{Backend: "qemu", Accel: "tcg", Reason: fmt.Sprintf("no usable KVM (%s): QEMU software emulation, expect slow boots", kvm.Reason)}, nil
		}
		return Choice{}, fmt.Errorf("choose hypervisor: no usable KVM (%s) and %s; %s", kvm.Reason, qemuProblem(qemu), installQEMU)
	case "firecracker":
		if !kvm.Usable {
			return Choice{}, fmt.Errorf("choose hypervisor: firecracker needs KVM: %s; run banger on a host with KVM, or set the hypervisor to qemu or auto", kvm.Reason)
		}
		if fcErr != "" {
			return Choice{}, fmt.Errorf("choose hypervisor: %s; %s", fcErr, installFirecracker)
		}
		return Choice{Backend: "firecracker", Accel: "kvm", Reason: fmt.Sprintf("firecracker %s as configured", firecracker.Version)}, nil
	case "qemu":
		if !qemuOK {
			return Choice{}, fmt.Errorf("choose hypervisor: %s; %s", qemuProblem(qemu), installQEMU)
		}
		if kvm.Usable {
			return Choice{Backend: "qemu", Accel: "kvm", Reason: "QEMU with KVM as configured"}, nil
		}
		return Choice{Backend: "qemu", Accel: "tcg", Reason: fmt.Sprintf("QEMU as configured, no usable KVM (%s): software emulation, expect slow boots", kvm.Reason)}, nil
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
