package host

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestChoose(t *testing.T) {
	usable := KVM{Present: true, Writable: true, Usable: true, Reason: "KVM ran a test guest"}
	none := KVM{Reason: "no /dev/kvm"}
	fc := Tool{Name: "firecracker", Path: "/usr/bin/firecracker", Version: "1.16.1"}
	fcPreACPI := Tool{Name: "firecracker", Path: "/usr/bin/firecracker", Version: "1.7.0"}
	fcOld := Tool{Name: "firecracker", Path: "/usr/bin/firecracker", Version: "0.25.2"}
	fcMissing := Tool{Name: "firecracker", Err: errors.New("look firecracker: executable file not found in $PATH")}
	qemu := Tool{Name: "qemu-system-x86_64", Path: "/usr/bin/qemu-system-x86_64", Version: "7.2.19"}
	qemuMissing := Tool{Name: "qemu-system-x86_64", Err: errors.New("look qemu-system-x86_64: executable file not found in $PATH")}

	tests := []struct {
		name    string
		setting string
		kvm     KVM
		fc      Tool
		qemu    Tool
		want    Choice
		err     string
	}{
		{name: "auto: kvm and firecracker", setting: "auto", kvm: usable, fc: fc, qemu: qemuMissing,
			want: Choice{Backend: "firecracker", Accel: "kvm", Version: "1.16.1", Reason: "KVM usable, firecracker 1.16.1 found: Firecracker"}},
		{name: "empty means auto", setting: "", kvm: usable, fc: fc, qemu: qemu,
			want: Choice{Backend: "firecracker", Accel: "kvm", Version: "1.16.1", Reason: "KVM usable, firecracker 1.16.1 found: Firecracker"}},
		{name: "auto: kvm, no firecracker", setting: "auto", kvm: usable, fc: fcMissing, qemu: qemu,
			want: Choice{Backend: "qemu", Accel: "kvm", Version: "7.2.19", Reason: "KVM usable but no usable firecracker (look firecracker: executable file not found in $PATH): QEMU with KVM"}},
		{name: "auto: kvm, old firecracker", setting: "auto", kvm: usable, fc: fcOld, qemu: qemu,
			want: Choice{Backend: "qemu", Accel: "kvm", Version: "7.2.19", Reason: "KVM usable but firecracker 0.25.2 at /usr/bin/firecracker is older than 1.0.0: QEMU with KVM"}},
		{name: "auto: kvm, firecracker before ACPI, qemu", setting: "auto", kvm: usable, fc: fcPreACPI, qemu: qemu,
			want: Choice{Backend: "qemu", Accel: "kvm", Version: "7.2.19", Reason: `KVM usable but firecracker 1.7.0 is older than 1.8.0 and boots only kernels with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES (set hypervisor = "firecracker" to use it with one): QEMU with KVM`}},
		{name: "auto: kvm, firecracker before ACPI, no qemu", setting: "auto", kvm: usable, fc: fcPreACPI, qemu: qemuMissing,
			want: Choice{Backend: "firecracker", Accel: "kvm", Version: "1.7.0", Reason: "KVM usable, firecracker 1.7.0 found, no QEMU: Firecracker (before 1.8.0: it needs kernels with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES)"}},
		{name: "auto: kvm, zero firecracker", setting: "auto", kvm: usable, fc: Tool{}, qemu: qemu,
			want: Choice{Backend: "qemu", Accel: "kvm", Version: "7.2.19", Reason: "KVM usable but no firecracker binary: QEMU with KVM"}},
		{name: "auto: kvm, nothing", setting: "auto", kvm: usable, fc: fcMissing, qemu: qemuMissing,
			err: "choose hypervisor: KVM is usable but no usable firecracker (look firecracker: executable file not found in $PATH) and no usable qemu-system-x86_64 (look qemu-system-x86_64: executable file not found in $PATH); " + installFirecracker + ", or " + installQEMU},
		{name: "auto: no kvm", setting: "auto", kvm: none, fc: fc, qemu: qemu,
			want: Choice{Backend: "qemu", Accel: "tcg", Version: "7.2.19", Reason: "no usable KVM (no /dev/kvm): QEMU software emulation, expect slow boots"}},
		{name: "auto: no kvm, no qemu", setting: "auto", kvm: none, fc: fc, qemu: Tool{},
			err: "choose hypervisor: no usable KVM (no /dev/kvm) and no qemu-system-x86_64; " + installQEMU},
		{name: "firecracker", setting: "firecracker", kvm: usable, fc: fc, qemu: qemuMissing,
			want: Choice{Backend: "firecracker", Accel: "kvm", Version: "1.16.1", Reason: "firecracker 1.16.1 as configured"}},
		{name: "firecracker before ACPI", setting: "firecracker", kvm: usable, fc: fcPreACPI, qemu: qemu,
			want: Choice{Backend: "firecracker", Accel: "kvm", Version: "1.7.0", Reason: "firecracker 1.7.0 as configured (before 1.8.0: it needs kernels with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES)"}},
		{name: "firecracker without kvm", setting: "firecracker", kvm: none, fc: fc, qemu: qemu,
			err: "choose hypervisor: firecracker needs KVM: no /dev/kvm; run banger on a host with KVM, or set the hypervisor to qemu or auto"},
		{name: "firecracker without binary", setting: "firecracker", kvm: usable, fc: fcMissing, qemu: qemu,
			err: "choose hypervisor: no usable firecracker (look firecracker: executable file not found in $PATH); " + installFirecracker},
		{name: "firecracker too old", setting: "firecracker", kvm: usable, fc: fcOld, qemu: qemu,
			err: "choose hypervisor: firecracker 0.25.2 at /usr/bin/firecracker is older than 1.0.0; " + installFirecracker},
		{name: "qemu with kvm", setting: "qemu", kvm: usable, fc: fc, qemu: qemu,
			want: Choice{Backend: "qemu", Accel: "kvm", Version: "7.2.19", Reason: "QEMU with KVM as configured"}},
		{name: "qemu without kvm", setting: "qemu", kvm: none, fc: fc, qemu: qemu,
			want: Choice{Backend: "qemu", Accel: "tcg", Version: "7.2.19", Reason: "QEMU as configured, no usable KVM (no /dev/kvm): software emulation, expect slow boots"}},
		{name: "qemu missing", setting: "qemu", kvm: usable, fc: fc, qemu: qemuMissing,
			err: "choose hypervisor: no usable qemu-system-x86_64 (look qemu-system-x86_64: executable file not found in $PATH); " + installQEMU},
		{name: "unknown", setting: "xen", kvm: usable, fc: fc, qemu: qemu,
			err: `choose hypervisor: unknown setting "xen", want auto, firecracker or qemu`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Choose(tt.setting, tt.kvm, tt.fc, tt.qemu)
			var gotErr string
			if err != nil {
				gotErr = err.Error()
			}
			if diff := cmp.Diff(tt.err, gotErr); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("choice (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFirecrackerKernelProblem(t *testing.T) {
	tests := []struct {
		version     string
		mmioCmdline bool
		problem     bool
	}{
		{"1.16.1", false, false},
		{"1.8.0", false, false},
		{"1.7.0", true, false},
		{"1.7.0", false, true},
		{"1.0.0", false, true},
	}
	for _, tt := range tests {
		got := FirecrackerKernelProblem(tt.version, tt.mmioCmdline)
		if (got != "") != tt.problem {
			t.Errorf("FirecrackerKernelProblem(%q, %v) = %q, want a problem: %v", tt.version, tt.mmioCmdline, got, tt.problem)
		}
	}
}
