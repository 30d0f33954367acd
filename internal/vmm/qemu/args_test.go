package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/banger/banger/internal/vmm"
)

func baseSpec() vmm.Spec {
	return vmm.Spec{
		Name:        "dev",
		ID:          "a1b2c3",
		VCPU:        2,
		MemoryMiB:   1024,
		Kernel:      "/var/lib/banger/kernels/6.1/vmlinuz",
		Cmdline:     "console=ttyS0 panic=-1",
		AgentSocket: "/run/banger/vms/a1b2c3/agent.sock",
		ConsoleLog:  "/var/lib/banger/vms/dev/console.log",
		RunDir:      "/run/banger/vms/a1b2c3",
		Accel:       vmm.AccelTCG,
	}
}

// Set BANGER_UPDATE_GOLDEN=1 to rewrite testdata/*.golden from Args.
func TestArgsGolden(t *testing.T) {
	disks := []vmm.Disk{
		{Path: "/var/lib/banger/images/debian/rootfs.ext4", ReadOnly: true, Serial: "banger-root"},
		{Path: "/var/lib/banger/vms/dev/rw.ext4", Serial: "banger-rw"},
	}
	tests := []struct {
		golden string
		change func(*vmm.Spec)
		opts   Options
	}{
		{"tcg-minimal", func(*vmm.Spec) {}, Options{}},
		{"tcg-disks-tap", func(s *vmm.Spec) {
			s.Initrd = "/var/lib/banger/kernels/6.1/initrd.img"
			s.Disks = disks
			s.NIC = &vmm.NIC{Tap: "bgtapa1b2c3", MAC: "52:54:00:ab:cd:ef"}
		}, Options{Sandbox: true}},
		{"kvm-minimal", func(s *vmm.Spec) { s.Accel = vmm.AccelKVM }, Options{}},
		{"kvm-readonly-disk", func(s *vmm.Spec) {
			s.Accel = vmm.AccelKVM
			s.VCPU, s.MemoryMiB = 4, 4096
			s.Initrd = "/var/lib/banger/kernels/6.1/initrd.img"
			s.Disks = disks[:1]
		}, Options{Sandbox: true}},
		{"kvm-tap-fd", func(s *vmm.Spec) {
			s.Accel = vmm.AccelKVM
			s.Initrd = "/var/lib/banger/kernels/6.1/initrd.img"
			s.Disks = disks
			s.NIC = &vmm.NIC{Tap: "bgtapa1b2c3", MAC: "52:54:00:ab:cd:ef", FD: os.Stdin}
		}, Options{Sandbox: true}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			s := baseSpec()
			tt.change(&s)
			if err := s.Validate(); err != nil {
				t.Fatalf("test spec invalid: %v", err)
			}
			got := strings.Join(Args(s, tt.opts), "\n") + "\n"
			path := filepath.Join("testdata", tt.golden+".golden")
			if os.Getenv("BANGER_UPDATE_GOLDEN") == "1" {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (BANGER_UPDATE_GOLDEN=1 writes it)", err)
			}
			if d := cmp.Diff(string(want), got); d != "" {
				t.Errorf("Args differ from %s (-want +got):\n%s", path, d)
			}
		})
	}
}

// Every argv names the VM's own QMP socket: Adopt relies on it.
func TestArgsNameControlSocket(t *testing.T) {
	s := baseSpec()
	found := false
	for _, a := range Args(s, Options{}) {
		found = found || strings.Contains(a, QMPSocket(s.RunDir))
	}
	if !found {
		t.Errorf("Args does not mention %s", QMPSocket(s.RunDir))
	}
}
