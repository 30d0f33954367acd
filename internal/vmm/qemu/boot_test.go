package qemu

import (
	"bufio"
	"context"
	"debug/elf"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/banger/banger/internal/vmm"
)

// Real QEMU guests. They need qemu-system-x86_64, a static busybox and a
// kernel: BANGER_TEST_KERNEL (a bzImage) and BANGER_TEST_MODULES (its
// /lib/modules/<version> directory), e.g. from Debian's
// linux-image-cloud-amd64. Without them the tests skip; under
// BANGER_E2E=1 a missing qemu or busybox fails, and a kernel or module
// directory that is set but unusable fails always.

const (
	marker = "BANGER-E2E-MARKER"
	// bootDeadline bounds every boot: TCG guests here reach init in ~3s.
	bootDeadline = 60 * time.Second
)

// modules are loaded in this order: virtio needs virtio_ring's symbols.
var testModules = []string{"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_console", "virtio_blk"}

const testInit = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
set -e
mount -t devtmpfs dev /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
for m in ` + "MODULES" + `; do insmod /lib/modules/$m.ko; done
echo ` + marker + ` on the console
# devtmpfs makes /dev/vportNpM; the name links are udev's job, done here.
for i in $(seq 50); do [ -e /sys/class/virtio-ports/vport1p1/name ] && break; sleep 0.1; done
mkdir -p /dev/virtio-ports
for p in /sys/class/virtio-ports/*; do ln -s /dev/${p##*/} /dev/virtio-ports/$(cat $p/name); done
for b in /sys/block/vd*; do echo "disk ${b##*/} serial $(cat $b/serial) ro $(cat $b/ro)"; done
exec 3<>/dev/virtio-ports/banger.agent
echo ` + marker + ` >&3
read -r ack <&3
echo "guest got: $ack"
poweroff -f
`

// need skips when a prerequisite is missing, or fails under BANGER_E2E=1.
func need(t *testing.T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("BANGER_E2E") == "1" {
		t.Fatalf("BANGER_E2E=1: %s", why)
	}
	t.Skipf("skipping: %s (BANGER_E2E=1 makes this a failure)", why)
}

// realQEMU returns a backend on the host's QEMU and a guest kernel.
func realQEMU(t *testing.T) (b *Backend, kernel, modules string) {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	need(t, err == nil, "no qemu-system-x86_64 (apt-get install qemu-system-x86)")
	kernel, modules = os.Getenv("BANGER_TEST_KERNEL"), os.Getenv("BANGER_TEST_MODULES")
	if kernel == "" || modules == "" {
		t.Skip("skipping: set BANGER_TEST_KERNEL to a bzImage and BANGER_TEST_MODULES to its modules directory")
	}
	for _, p := range []string{kernel, modules} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("BANGER_TEST_KERNEL/BANGER_TEST_MODULES: %v", err)
		}
	}
	return New(Config{Binary: bin}), kernel, modules
}

// staticBusybox finds a statically linked busybox: the initramfs has no
// libc.
func staticBusybox(t *testing.T) string {
	t.Helper()
	const p = "/bin/busybox"
	f, err := elf.Open(p)
	need(t, err == nil, "no "+p+" (apt-get install busybox-static)")
	defer f.Close()
	for _, prog := range f.Progs {
		need(t, prog.Type != elf.PT_INTERP, p+" is dynamically linked (apt-get install busybox-static)")
	}
	return p
}

// buildInitramfs writes a newc archive holding busybox, the modules and
// /init.
func buildInitramfs(t *testing.T, dst, busybox, modDir string) {
	t.Helper()
	found := map[string]string{}
	filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			found[d.Name()] = p
		}
		return nil
	})
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	w := cpio.NewWriter(out)
	add := func(name string, mode cpio.FileMode, data []byte) {
		if err := w.WriteHeader(&cpio.Header{Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	file := func(name, src string, mode cpio.FileMode) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		add(name, mode, b)
	}
	for _, d := range []string{"bin", "dev", "proc", "sys", "lib", "lib/modules"} {
		add(d, cpio.TypeDir|0o755, nil)
	}
	file("bin/busybox", busybox, 0o755)
	for _, m := range testModules {
		src, ok := found[m+".ko"]
		if !ok {
			t.Fatalf("BANGER_TEST_MODULES=%s has no %s.ko (uncompressed modules wanted)", modDir, m)
		}
		file("lib/modules/"+m+".ko", src, 0o644)
	}
	add("init", 0o755, []byte(strings.Replace(testInit, "MODULES", strings.Join(testModules, " "), 1)))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// bootSpec is a VM with two small disks in a short temporary directory.
func bootSpec(t *testing.T, kernel string) vmm.Spec {
	dir := shortDir(t)
	var disks []vmm.Disk
	for _, d := range []vmm.Disk{{Path: "root.img", ReadOnly: true, Serial: "banger-root"}, {Path: "rw.img", Serial: "banger-rw"}} {
		d.Path = filepath.Join(dir, d.Path)
		if err := os.WriteFile(d.Path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(d.Path, 1<<20); err != nil {
			t.Fatal(err)
		}
		disks = append(disks, d)
	}
	return vmm.Spec{
		Name: "boot", ID: "e2e", VCPU: 1, MemoryMiB: 256,
		Kernel:      kernel,
		Cmdline:     "console=ttyS0 panic=-1 quiet",
		Disks:       disks,
		AgentSocket: filepath.Join(dir, "run", "agent.sock"),
		ConsoleLog:  filepath.Join(dir, "console.log"),
		RunDir:      filepath.Join(dir, "run"),
		Accel:       vmm.AccelTCG,
	}
}

// agentLine connects to the agent socket and reads one line, within ctx.
func agentLine(ctx context.Context, path string) (net.Conn, string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, "", err
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, "", err
	}
	return c, strings.TrimSpace(line), nil
}

func TestBoot(t *testing.T) {
	b, kernel, modules := realQEMU(t)
	busybox := staticBusybox(t)
	spec := bootSpec(t, kernel)
	spec.Initrd = filepath.Join(filepath.Dir(spec.RunDir), "initramfs.cpio")
	buildInitramfs(t, spec.Initrd, busybox, modules)

	ctx, cancel := context.WithTimeout(t.Context(), bootDeadline)
	defer cancel()
	start := time.Now()
	m, err := b.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	reap(t, m)
	started := time.Since(start)

	// A restarted daemon would find the real QEMU by its record.
	adopted, err := b.Adopt(m.Record())
	if err != nil {
		t.Fatalf("Adopt of a running QEMU: %v", err)
	}
	q, err := DialQMP(ctx, m.Record().ControlSocket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := q.Status(ctx)
	q.Close()
	if err != nil || !st.Running {
		t.Errorf("QMP status = %+v, %v; want running", st, err)
	}

	conn, line, err := agentLine(ctx, spec.AgentSocket)
	if err != nil {
		t.Fatalf("agent channel: %v; console tail: %s", err, vmm.ConsoleTail(spec.ConsoleLog, 8))
	}
	toMarker := time.Since(start)
	defer conn.Close()
	if line != marker {
		t.Fatalf("agent channel said %q, want %q", line, marker)
	}
	if _, err := conn.Write([]byte("ack\n")); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(ctx); err != nil {
		t.Fatalf("guest did not power off: %v; console tail: %s", err, vmm.ConsoleTail(spec.ConsoleLog, 8))
	}
	if err := adopted.Wait(ctx); err != nil {
		t.Fatalf("adopted machine did not see the exit: %v", err)
	}
	t.Logf("QEMU answered QMP after %v; agent marker after %v; exited after %v", started.Round(time.Millisecond), toMarker.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	console, err := os.ReadFile(spec.ConsoleLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{marker + " on the console", "disk vda serial banger-root ro 1", "disk vdb serial banger-rw ro 0", "guest got: ack"} {
		if !strings.Contains(string(console), want) {
			t.Errorf("console lacks %q; tail: %s", want, vmm.ConsoleTail(spec.ConsoleLog, 8))
		}
	}
	if pids := procsNaming(t, QMPSocket(spec.RunDir)); len(pids) > 0 {
		t.Errorf("processes %v outlived the guest", pids)
	}
}

// A kernel that never reaches init (no root, panic=0: it hangs) is cut off
// by the caller's boot deadline, and Kill + Wait leave nothing behind.
func TestBootDeadlineKillsHungGuest(t *testing.T) {
	b, kernel, _ := realQEMU(t)
	spec := bootSpec(t, kernel)
	spec.Cmdline = "console=ttyS0 panic=0"

	ctx, cancel := context.WithTimeout(t.Context(), bootDeadline)
	defer cancel()
	m, err := b.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	reap(t, m)

	// Let it get as far as it will (the panic), then give it one more
	// second to speak on the agent channel, as a boot deadline would.
	for !strings.Contains(vmm.ConsoleTail(spec.ConsoleLog, 3), "end Kernel panic") {
		select {
		case <-ctx.Done():
			t.Fatalf("no kernel panic within %v; console tail: %s", bootDeadline, vmm.ConsoleTail(spec.ConsoleLog, 8))
		case <-time.After(100 * time.Millisecond):
		}
	}
	const deadline = time.Second
	bootCtx, bootCancel := context.WithTimeout(ctx, deadline)
	defer bootCancel()
	conn, line, err := agentLine(bootCtx, spec.AgentSocket)
	if err == nil {
		conn.Close()
		t.Fatalf("a guest with no init spoke on the agent channel: %q", line)
	}
	if !m.Alive() {
		t.Fatalf("QEMU exited by itself (%v), want a hung guest; console tail: %s", err, vmm.ConsoleTail(spec.ConsoleLog, 8))
	}
	t.Logf("boot timed out (%v); console tail: %s", err, vmm.ConsoleTail(spec.ConsoleLog, 1))
	if err := m.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := m.Wait(wctx); err != nil {
		t.Fatalf("Wait after Kill: %v", err)
	}
	if pids := procsNaming(t, QMPSocket(spec.RunDir)); len(pids) > 0 {
		t.Errorf("processes %v outlived Kill + Wait", pids)
	}
}
