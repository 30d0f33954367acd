package vmm

import (
	"os"
	"strings"
	"testing"
)

func validSpec() Spec {
	return Spec{
		Name:        "dev-1",
		ID:          "a1b2c3",
		VCPU:        2,
		MemoryMiB:   1024,
		Kernel:      "/var/lib/banger/kernels/k/vmlinuz",
		Initrd:      "/var/lib/banger/kernels/k/initrd.img",
		Cmdline:     "console=ttyS0",
		Disks:       []Disk{{Path: "/var/lib/banger/images/i/rootfs.ext4", ReadOnly: true, Serial: "banger-root"}, {Path: "/var/lib/banger/vms/dev-1/rw.ext4", Serial: "banger-rw"}},
		NIC:         &NIC{Tap: "bgtapa1b2c3", MAC: "52:54:00:12:34:56"},
		AgentSocket: "/run/banger/vms/a1b2c3/agent.sock",
		ConsoleLog:  "/var/lib/banger/vms/dev-1/console.log",
		RunDir:      "/run/banger/vms/a1b2c3",
		Accel:       AccelTCG,
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Spec)
		want   string // substring of the error; "" means valid
	}{
		{"valid", func(*Spec) {}, ""},
		{"no initrd, disks or nic", func(s *Spec) { s.Initrd, s.Disks, s.NIC = "", nil, nil }, ""},
		{"kvm", func(s *Spec) { s.Accel = AccelKVM }, ""},
		{"tap fd only", func(s *Spec) { s.NIC = &NIC{FD: os.Stdin, MAC: "52:54:00:12:34:56"} }, ""},
		{"name not a label", func(s *Spec) { s.Name = "Dev_1" }, `name "Dev_1" is not a DNS label`},
		{"name trailing dash", func(s *Spec) { s.Name = "dev-" }, "not a DNS label"},
		{"bad id", func(s *Spec) { s.ID = "../x" }, `id "../x"`},
		{"zero vcpu", func(s *Spec) { s.VCPU = 0 }, "vcpu 0 out of range 1-255"},
		{"too many vcpu", func(s *Spec) { s.VCPU = 256 }, "vcpu 256 out of range"},
		{"too little memory", func(s *Spec) { s.MemoryMiB = 64 }, "memory 64 MiB out of range 128-1048576"},
		{"missing kernel", func(s *Spec) { s.Kernel = "" }, "kernel: no path"},
		{"relative kernel", func(s *Spec) { s.Kernel = "vmlinuz" }, `kernel: "vmlinuz" is not an absolute path`},
		{"comma in initrd", func(s *Spec) { s.Initrd = "/a,b/initrd" }, "initrd: \"/a,b/initrd\" contains a comma"},
		{"long cmdline", func(s *Spec) { s.Cmdline = strings.Repeat("x", 2048) }, "kernel command line is 2048 bytes, at most 2047"},
		{"newline in cmdline", func(s *Spec) { s.Cmdline = "a\nb" }, "NUL or newline"},
		{"serial too long", func(s *Spec) { s.Disks[0].Serial = "banger-root-0123456789" }, `disk 0: serial "banger-root-0123456789" is longer than 20`},
		{"serial missing", func(s *Spec) { s.Disks[1].Serial = "" }, "disk 1: no serial"},
		{"serial charset", func(s *Spec) { s.Disks[1].Serial = "a,b" }, `disk 1: serial "a,b" may only hold`},
		{"serial twice", func(s *Spec) { s.Disks[1].Serial = "banger-root" }, `disk 1: serial "banger-root" used twice`},
		{"disk path", func(s *Spec) { s.Disks[1].Path = "" }, "disk 1: no path"},
		{"bad mac", func(s *Spec) { s.NIC.MAC = "52:54:00:12:34" }, `nic: MAC "52:54:00:12:34" is not of the form`},
		{"mac too long", func(s *Spec) { s.NIC.MAC = "52:54:00:12:34:56:78:9a" }, "is not of the form"},
		{"multicast mac", func(s *Spec) { s.NIC.MAC = "01:00:5e:00:00:01" }, "multicast"},
		{"zero mac", func(s *Spec) { s.NIC.MAC = "00:00:00:00:00:00" }, "all zeros"},
		{"no tap", func(s *Spec) { s.NIC.Tap = "" }, "neither a tap name nor an open tap"},
		{"long tap", func(s *Spec) { s.NIC.Tap = "bgtap0123456789ab" }, "is not an interface name"},
		{"no agent socket", func(s *Spec) { s.AgentSocket = "" }, "agent socket: no path"},
		{"agent socket too long", func(s *Spec) { s.AgentSocket = "/run/" + strings.Repeat("a", 98) + ".sock" }, "agent socket /run/aaa"},
		{"agent socket 107 bytes", func(s *Spec) { s.AgentSocket = "/" + strings.Repeat("a", 106) }, ""},
		{"run dir too long", func(s *Spec) { s.RunDir = "/" + strings.Repeat("r", 90) }, "too long for the control sockets"},
		{"run dir at the limit", func(s *Spec) { s.RunDir = "/" + strings.Repeat("r", 89) }, ""},
		{"no console", func(s *Spec) { s.ConsoleLog = "" }, "console log: no path"},
		{"bad accel", func(s *Spec) { s.Accel = "hvf" }, `accel "hvf"`},
		{"several at once", func(s *Spec) { s.VCPU, s.Accel = 0, "" }, "vcpu 0 out of range 1-255; accel \"\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			s.Disks = append([]Disk(nil), s.Disks...)
			nic := *s.NIC
			s.NIC = &nic
			tt.change(&s)
			err := s.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate() = %v, want it to contain %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}
