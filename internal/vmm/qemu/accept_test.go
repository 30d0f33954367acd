package qemu

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/banger/banger/internal/vmm"
)

// The real QEMU must accept every argv Args builds. The KVM argv (microvm)
// cannot run here with KVM, so it runs under TCG: the same machine,
// options and devices, with TCG's accelerator and CPU model. QEMU checks
// options and creates every device before the guest runs, so a QEMU still
// running after acceptWait, with nothing on stderr, took them all. Where
// the guest goes next does not matter (microvm under TCG may hang in
// boot): there is no guest, only a stand-in kernel that halts.

const acceptWait = 3 * time.Second

// underTCG rewrites argv to run without KVM and without a tap: -accel tcg,
// -cpu max (-cpu host needs KVM), and the NIC on a UDP socket on loopback
// that the halted guest never sends to.
func underTCG(args []string) []string {
	out := slices.Clone(args)
	for i := 0; i+1 < len(out); i++ {
		switch out[i] {
		case "-accel":
			out[i+1] = "tcg"
		case "-cpu":
			out[i+1] = "max"
		case "-netdev":
			out[i+1] = "socket,id=n0,udp=127.0.0.1:9,localaddr=127.0.0.1:0"
		}
	}
	return out
}

// haltKernel writes the smallest file QEMU loads as a Linux bzImage with an
// initrd (boot protocol 2.02): its real-mode entry point disables
// interrupts and halts.
func haltKernel(t *testing.T, path string) {
	t.Helper()
	b := make([]byte, 64<<10)
	b[0x1f1] = 4                        // setup_sects
	copy(b[0x200:], []byte{0xeb, 0x66}) // jmp 0x268
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x0202) // protocol version
	b[0x211] = 0x01                                  // loadflags: LOADED_HIGH
	copy(b[0x268:], []byte{0xfa, 0xf4, 0xeb, 0xfd})  // cli; hlt; jmp hlt
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// acceptSpec is a VM with every kind of device and as many disks as a
// Spec may have, its files in a fresh short directory.
func acceptSpec(t *testing.T, accel string) vmm.Spec {
	t.Helper()
	dir := shortDir(t)
	s := vmm.Spec{
		Name: "accept", ID: "acc", VCPU: 2, MemoryMiB: 256,
		Kernel:      filepath.Join(dir, "vmlinuz"),
		Initrd:      filepath.Join(dir, "initrd"),
		Cmdline:     "console=ttyS0 panic=-1",
		AgentSocket: filepath.Join(dir, "run", "agent.sock"),
		ConsoleLog:  filepath.Join(dir, "console.log"),
		RunDir:      filepath.Join(dir, "run"),
		Accel:       accel,
		NIC:         &vmm.NIC{Tap: "bgtapacc", MAC: "52:54:00:ab:cd:ef"},
	}
	haltKernel(t, s.Kernel)
	if err := os.WriteFile(s.Initrd, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.RunDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range vmm.MaxDisks {
		d := vmm.Disk{Path: filepath.Join(dir, fmt.Sprintf("disk%d.img", i)), Serial: fmt.Sprintf("banger-d%d", i), ReadOnly: i == 0}
		if err := os.WriteFile(d.Path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(d.Path, 1<<20); err != nil {
			t.Fatal(err)
		}
		s.Disks = append(s.Disks, d)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("test spec invalid: %v", err)
	}
	return s
}

func TestQEMUAcceptsArgs(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	need(t, err == nil, "no qemu-system-x86_64 (apt-get install qemu-system-x86)")
	for _, tt := range []struct {
		accel   string
		machine string
		virtio  string // how the virtio devices' names end
	}{
		{vmm.AccelKVM, "microvm", "-device"},
		{vmm.AccelTCG, "q35", "-pci"},
	} {
		t.Run(tt.accel, func(t *testing.T) {
			t.Parallel()
			spec := acceptSpec(t, tt.accel)
			args := underTCG(Args(spec, Options{Sandbox: true}))
			if i := slices.Index(args, "-machine"); i < 0 || !strings.HasPrefix(args[i+1], tt.machine+",") {
				t.Fatalf("argv has no -machine %s: %q", tt.machine, args)
			}
			var wantDevices []string
			for i, a := range args {
				if a == "-device" {
					typ, _, _ := strings.Cut(args[i+1], ",")
					if strings.HasPrefix(typ, "virtio-") && !strings.HasSuffix(typ, tt.virtio) {
						t.Errorf("device %s on %s, want the %s form", typ, tt.machine, tt.virtio)
					}
					wantDevices = append(wantDevices, typ)
				}
			}

			var stderr bytes.Buffer
			cmd := exec.Command(bin, args...)
			cmd.Stdout, cmd.Stderr = &stderr, &stderr
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var waitErr error
			exited := make(chan struct{})
			go func() { waitErr = cmd.Wait(); close(exited) }()
			stop := sync.OnceFunc(func() {
				cmd.Process.Kill()
				<-exited
			})
			t.Cleanup(stop)

			select {
			case <-exited:
				t.Fatalf("qemu exited within %v (%v), so it refused its argv:\n%s\nargv: %s", acceptWait, waitErr, stderr.String(), strings.Join(args, " "))
			case <-time.After(acceptWait):
			}
			// Still running: ask it which devices it made.
			qctx, qcancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer qcancel()
			got, err := qmpDevices(qctx, QMPSocket(spec.RunDir))
			if err != nil {
				t.Fatalf("QMP: %v; qemu said:\n%s", err, stderr.String())
			}
			slices.Sort(got)
			slices.Sort(wantDevices)
			if !slices.Equal(got, wantDevices) {
				t.Errorf("qemu made devices %q, want %q", got, wantDevices)
			}
			stop()
			if s := strings.TrimSpace(stderr.String()); s != "" {
				t.Errorf("qemu wrote to stderr:\n%s", s)
			}
		})
	}
}

// qmpDevices lists the types of the devices made by -device, with an id
// (/machine/peripheral) or without (/machine/peripheral-anon).
func qmpDevices(ctx context.Context, sock string) ([]string, error) {
	q, err := DialQMP(ctx, sock)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	var types []string
	for _, path := range []string{"/machine/peripheral", "/machine/peripheral-anon"} {
		var props []struct{ Name, Type string }
		if err := q.Execute(ctx, "qom-list", map[string]string{"path": path}, &props); err != nil {
			return nil, err
		}
		for _, p := range props {
			if typ, ok := strings.CutPrefix(p.Type, "child<"); ok {
				types = append(types, strings.TrimSuffix(typ, ">"))
			}
		}
	}
	return types, nil
}
