package firecracker

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/banger/banger/internal/guest/agent"
	"github.com/banger/banger/internal/guest/boot"
	"github.com/banger/banger/internal/vmm"
	"github.com/banger/banger/internal/vmm/firecracker/firecrackertest"
)

// fixture is a VM's files in a short directory (unix socket paths hold at
// most 107 bytes; t.TempDir paths can be longer), and the fake's config.
type fixture struct {
	dir, records, config string
	self                 string
	spec                 vmm.Spec
}

func newFixture(t *testing.T, cfg firecrackertest.Config) *fixture {
	t.Helper()
	dir, err := os.MkdirTemp("", "bfc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{dir: dir, records: filepath.Join(dir, "records"), config: filepath.Join(dir, "fake.json"), self: self}
	if err := os.Mkdir(fx.records, 0o755); err != nil {
		t.Fatal(err)
	}
	// The test binary is an x86_64 ELF executable: a kernel as far as
	// Firecracker's loader checks go.
	if err := os.Symlink(self, filepath.Join(dir, "vmlinux")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"initrd.img", "image.ext4", "layer.ext4", "work.ext4"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Records = fx.records
	if cfg.Agent == "" {
		cfg.Agent = self // TestMain's stand-in agent
	}
	fx.writeConfig(t, cfg)
	t.Setenv(firecrackertest.EnvConfig, fx.config)
	fx.spec = vmm.Spec{
		Name: "fc", ID: "f1", VCPU: 2, MemoryMiB: 256,
		Kernel: filepath.Join(dir, "vmlinux"), Initrd: filepath.Join(dir, "initrd.img"),
		Cmdline: "console=ttyS0 banger.image=vda",
		Disks: []vmm.Disk{
			{Path: filepath.Join(dir, "image.ext4"), ReadOnly: true, Serial: "banger-image"},
			{Path: filepath.Join(dir, "layer.ext4"), Serial: "banger-layer"},
			{Path: filepath.Join(dir, "work.ext4"), Serial: "banger-work"},
		},
		NIC:         &vmm.NIC{Tap: "bgtapf1", MAC: "52:54:00:00:00:01"},
		AgentSocket: filepath.Join(dir, "run", "agent.sock"),
		ConsoleLog:  filepath.Join(dir, "console.log"),
		RunDir:      filepath.Join(dir, "run"),
		Accel:       vmm.AccelKVM,
	}
	return fx
}

func (fx *fixture) writeConfig(t *testing.T, cfg firecrackertest.Config) {
	t.Helper()
	if err := firecrackertest.WriteConfig(fx.config, cfg); err != nil {
		t.Fatal(err)
	}
}

// requests are the fake's records for the VM, with the fixture's
// directory written $D, and without vsock lines (their number depends on
// timing) unless vsock is set.
func (fx *fixture) requests(t *testing.T, vsock bool) []string {
	t.Helper()
	lines, err := firecrackertest.Records(fx.records, fx.spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range lines {
		if !vsock && strings.HasPrefix(l, "vsock:") {
			continue
		}
		out = append(out, strings.ReplaceAll(l, fx.dir, "$D"))
	}
	return out
}

func (fx *fixture) backend() *Backend {
	return New(Config{Binary: fx.self, StartTimeout: 5 * time.Second})
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// reap kills m at the end of the test and checks nothing is left behind.
func reap(t *testing.T, m *vmm.Machine) {
	t.Cleanup(func() {
		m.Kill()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Wait(ctx); err != nil {
			t.Errorf("firecracker pid %d left behind: %v", m.PID(), err)
		}
	})
}

// bootRequests is what Start sends for the fixture's spec.
func bootRequests() []string {
	return []string{
		"start --api-sock $D/run/fc.sock --id f1",
		"GET /version -> 200",
		`PUT /logger {"level":"Info","log_path":"$D/run/firecracker.log","show_level":true} -> 204`,
		`PUT /metrics {"metrics_path":"$D/run/firecracker.metrics"} -> 204`,
		`PUT /machine-config {"mem_size_mib":256,"vcpu_count":2} -> 204`,
		`PUT /boot-source {"boot_args":"console=ttyS0 banger.image=vda reboot=k pci=off i8042.noaux i8042.nomux i8042.dumbkbd","initrd_path":"$D/initrd.img","kernel_image_path":"$D/vmlinux"} -> 204`,
		`PUT /drives/banger_image {"drive_id":"banger_image","is_read_only":true,"is_root_device":false,"path_on_host":"$D/image.ext4"} -> 204`,
		`PUT /drives/banger_layer {"cache_type":"Writeback","drive_id":"banger_layer","is_read_only":false,"is_root_device":false,"path_on_host":"$D/layer.ext4"} -> 204`,
		`PUT /drives/banger_work {"cache_type":"Writeback","drive_id":"banger_work","is_read_only":false,"is_root_device":false,"path_on_host":"$D/work.ext4"} -> 204`,
		`PUT /network-interfaces/eth0 {"guest_mac":"52:54:00:00:00:01","host_dev_name":"bgtapf1","iface_id":"eth0"} -> 204`,
		`PUT /vsock {"guest_cid":3,"uds_path":"$D/run/agent.sock"} -> 204`,
		`PUT /actions {"action_type":"InstanceStart"} -> 204`,
		"GET / -> 200",
	}
}

func TestStartRequestSequenceAndShutdown(t *testing.T) {
	fx := newFixture(t, firecrackertest.Config{})
	ctx := testContext(t)
	m, err := fx.backend().Start(ctx, fx.spec)
	if err != nil {
		t.Fatal(err)
	}
	reap(t, m)
	if diff := cmp.Diff(bootRequests(), fx.requests(t, false)); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}

	rec := m.Record()
	want := vmm.Record{Backend: Name, PID: m.PID(), ControlSocket: fx.spec.RunDir + "/fc.sock", AgentSocket: fx.spec.AgentSocket, AgentVsockPort: AgentPort, Log: fx.spec.RunDir + "/firecracker.log"}
	if diff := cmp.Diff(want, rec, cmp.FilterPath(func(p cmp.Path) bool {
		n := p.Last().String()
		return n == ".StartTime" || n == ".BootID" || n == ".Argv"
	}, cmp.Ignore())); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	if got, want := rec.Argv, []string{fx.self, "--api-sock", fx.spec.RunDir + "/fc.sock", "--id", "f1"}; !slices.Equal(got, want) {
		t.Errorf("argv = %q, want %q", got, want)
	}
	if sid, _ := unix.Getsid(m.PID()); sid != m.PID() {
		t.Errorf("firecracker runs in session %d, want its own (%d)", sid, m.PID())
	}

	// The agent answers through the hybrid vsock socket.
	c := agent.NewClient(agent.ClientConfig{Dial: func(ctx context.Context) (net.Conn, error) {
		return agent.DialFirecrackerVsock(ctx, rec.AgentSocket, rec.AgentVsockPort)
	}})
	defer c.Close()
	if h, err := c.WaitReady(ctx, 20*time.Millisecond); err != nil || !h.Ready || h.Hostname != "f1" {
		t.Fatalf("agent over vsock: %+v, %v", h, err)
	}
	// The emulated guest has sshd listening and a host key, as a booted
	// golden image does.
	if ports, err := c.Ports(ctx); err != nil || len(ports) != 1 || ports[0].Port != 22 {
		t.Errorf("guest ports: %+v, %v", ports, err)
	}
	if key, err := c.ReadFile(ctx, "/etc/ssh/ssh_host_ed25519_key.pub"); err != nil || !strings.HasPrefix(string(key), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI") {
		t.Errorf("guest host key: %q, %v", key, err)
	}

	// Shutdown is Ctrl+Alt+Del; the guest reboots, which ends Firecracker.
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	got := fx.requests(t, false)[len(bootRequests()):]
	wantTail := []string{
		`PUT /actions {"action_type":"SendCtrlAltDel"} -> 204`,
		"guest: reboot: firecracker exits",
		"exit 0",
	}
	if diff := cmp.Diff(wantTail, got); diff != "" {
		t.Errorf("shutdown requests (-want +got):\n%s", diff)
	}
	if vs := fx.requests(t, true); !slices.Contains(vs, "vsock: CONNECT 1024: OK") {
		t.Errorf("no vsock connection recorded: %q", vs)
	}
	console, _ := os.ReadFile(fx.spec.ConsoleLog)
	if !strings.Contains(string(console), "Running Firecracker v1.16.1") {
		t.Errorf("console log lacks firecracker's output:\n%s", console)
	}
}

func TestGuestPowerOffLeavesFirecrackerRunning(t *testing.T) {
	fx := newFixture(t, firecrackertest.Config{})
	ctx := testContext(t)
	m, err := fx.backend().Start(ctx, fx.spec)
	if err != nil {
		t.Fatal(err)
	}
	reap(t, m)
	c := agent.NewClient(agent.ClientConfig{Dial: func(ctx context.Context) (net.Conn, error) {
		return agent.DialFirecrackerVsock(ctx, fx.spec.AgentSocket, AgentPort)
	}})
	defer c.Close()
	if _, err := c.WaitReady(ctx, 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(ctx, false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(fx.requests(t, false), "guest: power off: vCPUs halted, firecracker stays up") {
		if time.Now().After(deadline) {
			t.Fatalf("no power-off recorded: %q", fx.requests(t, true))
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if !m.Alive() {
		t.Error("firecracker exited after a guest power-off; on x86 it keeps running")
	}
	if _, err := agent.DialFirecrackerVsock(ctx, fx.spec.AgentSocket, AgentPort); err == nil {
		t.Error("vsock still reaches a halted guest")
	}
}

func TestStartFailures(t *testing.T) {
	tests := []struct {
		name   string
		cfg    firecrackertest.Config
		change func(fx *fixture, s *vmm.Spec)
		want   string
	}{
		{
			name: "a fault names the request and carries fault_message",
			cfg:  firecrackertest.Config{Faults: map[string]string{"PUT /network-interfaces/eth0": "Could not create the network device: Open tap device failed: Operation not permitted (os error 1)."}},
			want: `firecracker refused PUT /network-interfaces/eth0 (400): Could not create the network device: Open tap device failed: Operation not permitted (os error 1).`,
		},
		{
			name: "a kernel that is not ELF",
			change: func(fx *fixture, s *vmm.Spec) {
				s.Kernel = filepath.Join(fx.dir, "initrd.img")
			},
			want: `firecracker refused PUT /actions (400): Start microvm error: Cannot load kernel due to invalid memory configuration or invalid kernel image: Kernel Loader: failed to load ELF kernel image`,
		},
		{
			name:   "too many vCPUs",
			change: func(_ *fixture, s *vmm.Spec) { s.VCPU = 33 },
			want:   `33 vCPUs: firecracker runs at most 32`,
		},
		{
			name:   "a missing disk",
			change: func(fx *fixture, s *vmm.Spec) { s.Disks[2].Path = filepath.Join(fx.dir, "nope.ext4") },
			want:   "no such file or directory",
		},
		{
			name:   "an already-open tap",
			change: func(_ *fixture, s *vmm.Spec) { s.NIC.FD = os.Stdin },
			want:   "firecracker opens its tap by name",
		},
		{
			name:   "a command line too long with firecracker's additions",
			change: func(_ *fixture, s *vmm.Spec) { s.Cmdline = strings.Repeat("x", 2000) },
			want:   "kernel command line is",
		},
		{
			name: "firecracker exits at start",
			cfg:  firecrackertest.Config{Records: "/nonexistent"},
			want: "firecracker exited during start (its output is in the console log); console: fake firecracker: records:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, tt.cfg)
			if tt.cfg.Records != "" {
				cfg := tt.cfg
				cfg.Agent = fx.self
				fx.writeConfig(t, cfg) // keep the broken records dir
			}
			spec := fx.spec
			spec.Disks = slices.Clone(spec.Disks)
			nic := *spec.NIC
			spec.NIC = &nic
			if tt.change != nil {
				tt.change(fx, &spec)
			}
			m, err := fx.backend().Start(testContext(t), spec)
			if err == nil {
				reap(t, m)
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if out, _ := exec.Command("pgrep", "-f", spec.RunDir+"/fc.sock").Output(); len(out) > 0 {
				t.Errorf("firecracker left running: %s", out)
			}
		})
	}
}

func TestAdopt(t *testing.T) {
	fx := newFixture(t, firecrackertest.Config{})
	ctx := testContext(t)
	b := fx.backend()
	m, err := b.Start(ctx, fx.spec)
	if err != nil {
		t.Fatal(err)
	}
	reap(t, m)
	rec := m.Record()
	adopted, err := b.Adopt(rec)
	if err != nil {
		t.Fatal(err)
	}
	if adopted.PID() != m.PID() || !adopted.Alive() {
		t.Fatalf("adopted pid %d alive %v, want %d alive", adopted.PID(), adopted.Alive(), m.PID())
	}
	if _, err := b.Adopt(vmm.Record{Backend: "qemu", PID: 1}); err == nil {
		t.Error("adopted a qemu record")
	}
	if err := adopted.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Adopt(rec); !errors.Is(err, vmm.ErrGone) {
		t.Errorf("adopting a dead firecracker: %v, want ErrGone", err)
	}
}

func TestGuestConventions(t *testing.T) {
	if diff := cmp.Diff(vmm.Guest{DisksByOrder: true, AgentVsockPort: 1024, ExitOnReboot: true}, vmm.GuestOf(New(Config{}))); diff != "" {
		t.Error(diff)
	}
}

func TestDriveID(t *testing.T) {
	tests := []struct {
		serial string
		i      int
		want   string
	}{
		{"banger-image", 0, "banger_image"},
		{"a.b-c_d", 1, "a_b_c_d"},
		{"", 2, "drive2"},
	}
	for _, tt := range tests {
		if got := DriveID(tt.serial, tt.i); got != tt.want {
			t.Errorf("DriveID(%q, %d) = %q, want %q", tt.serial, tt.i, got, tt.want)
		}
	}
}

// TestMMIOParamsReachTheModule checks what Firecracker before 1.8 relies
// on: the virtio_mmio.device= parameters it appends to the command line
// (in this form) are handed by banger's init to the virtio_mmio module it
// loads, since the kernel applies module.param= only to built-in code.
func TestMMIOParamsReachTheModule(t *testing.T) {
	cmdline := "console=ttyS0 banger.image=vda reboot=k pci=off i8042.noaux i8042.nomux i8042.dumbkbd " +
		"virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6 virtio_mmio.device=4K@0xd0002000:7"
	want := "device=4K@0xd0000000:5 device=4K@0xd0001000:6 device=4K@0xd0002000:7"
	if got := boot.ModuleParams(cmdline, "virtio_mmio"); got != want {
		t.Errorf("ModuleParams(virtio_mmio) = %q, want %q", got, want)
	}
	if got := boot.ModuleParams(cmdline, "virtio_blk"); got != "" {
		t.Errorf("ModuleParams(virtio_blk) = %q, want none", got)
	}
}
