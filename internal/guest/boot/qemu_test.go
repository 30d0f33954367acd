package boot_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/banger/banger/internal/guest/boot"
	"github.com/banger/banger/internal/guest/initramfs"
	"github.com/banger/banger/internal/kernel"
)

// need finds a tool the QEMU test uses; missing, it skips, or fails under
// BANGER_E2E=1.
func need(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("BANGER_E2E") == "1" {
		t.Fatalf("BANGER_E2E=1 but %s is missing: %v", name, err)
	}
	t.Skipf("%s not installed", name)
	return ""
}

func runCmd(t *testing.T, dir string, env []string, argv ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
}

// testInitScript is the image's /sbin/init: it reports what the guest
// sees and powers off.
const testInitScript = `#!/bin/busybox sh
echo BANGER-TEST-INIT pid $$
busybox cat /proc/mounts
busybox ip -4 addr show
busybox ip route
echo hostname $(busybox hostname)
busybox cat /etc/hosts /etc/resolv.conf
busybox ls -l /etc/resolv.conf
busybox cat /root/work-marker
echo from-the-guest > /written-by-guest
busybox sleep 1
echo BANGER-TEST-DONE
busybox sync
busybox poweroff -f
`

// TestBootQEMU boots the kernel from BANGER_TEST_KERNEL_DEB under QEMU
// (TCG) with banger's initramfs and a busybox image, and checks the overlay
// root, the disks, the network, the identity files and the agent start.
func TestBootQEMU(t *testing.T) {
	deb := os.Getenv("BANGER_TEST_KERNEL_DEB")
	if deb == "" {
		t.Skip("BANGER_TEST_KERNEL_DEB is not set (path of a linux-image-*.deb)")
	}
	qemu := need(t, "qemu-system-x86_64")
	mkfs := need(t, "mkfs.ext4")
	debugfs := need(t, "debugfs")
	busybox := need(t, "busybox")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = need(t, "go")
	}
	if out, err := exec.Command("file", "-L", busybox).Output(); err == nil && !bytes.Contains(out, []byte("statically linked")) {
		t.Skipf("%s is not statically linked (install busybox-static)", busybox)
	}

	tmp := t.TempDir()
	k, err := kernel.ImportDeb(t.Context(), deb, filepath.Join(tmp, "kernel"))
	if err != nil {
		t.Fatal(err)
	}
	initBin := filepath.Join(tmp, "init")
	runCmd(t, ".", []string{"CGO_ENABLED=0"}, goTool, "build", "-o", initBin, "./testdata/bootinit")
	initrd := filepath.Join(tmp, "initrd")
	var buf bytes.Buffer
	if err := initramfs.Build(t.Context(), initramfs.Options{Kernel: k, InitPath: initBin}, &buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(initrd, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	rootDir := filepath.Join(tmp, "rootfs")
	for _, d := range []string{"bin", "sbin", "etc", "var/lib", "proc", "sys", "dev", "run", "root"} {
		os.MkdirAll(filepath.Join(rootDir, d), 0o755)
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(rootDir, "bin/busybox"), bb, 0o755)
	os.WriteFile(filepath.Join(rootDir, "sbin/init"), []byte(testInitScript), 0o755)
	os.Symlink("/run/systemd/resolve/stub-resolv.conf", filepath.Join(rootDir, "etc/resolv.conf"))
	workDir := filepath.Join(tmp, "work")
	os.MkdirAll(workDir, 0o755)
	os.WriteFile(filepath.Join(workDir, "work-marker"), []byte("work-disk-content\n"), 0o644)
	image, layer, work := filepath.Join(tmp, "image.ext4"), filepath.Join(tmp, "layer.ext4"), filepath.Join(tmp, "work.ext4")
	runCmd(t, tmp, nil, mkfs, "-q", "-F", "-d", rootDir, image, "16M")
	runCmd(t, tmp, nil, mkfs, "-q", "-F", layer, "32M")
	runCmd(t, tmp, nil, mkfs, "-q", "-F", "-d", workDir, work, "8M")

	mac, _ := net.ParseMAC("02:fc:00:00:00:05")
	params := boot.Params{
		Image: boot.Disk{Serial: "banger-image"}, Layer: boot.Disk{Serial: "banger-layer"}, Work: boot.Disk{Serial: "banger-work"},
		Address: netip.MustParsePrefix("172.30.0.5/24"), Gateway: netip.MustParseAddr("172.30.0.1"), MAC: mac,
		DNS: []netip.Addr{netip.MustParseAddr("172.30.0.1")}, Hostname: "e2e-box", Agent: boot.AgentVirtioSerial, Debug: true,
	}

	t.Run("boot", func(t *testing.T) {
		t.Parallel()
		console := bootQEMU(t, qemu, k, initrd, params.Cmdline(), image, layer, work)
		for _, want := range []string{
			"banger-init: switching root",
			"BANGER-TEST-INIT pid 1",
			"overlay / overlay rw",
			"lowerdir=/image,upperdir=/layer/upper,workdir=/layer/work",
			" /var/lib/docker ext4 rw",
			" /root ext4 rw",
			"inet 172.30.0.5/24",
			"default via 172.30.0.1 dev eth0",
			"hostname e2e-box",
			"127.0.1.1\te2e-box",
			"nameserver 172.30.0.1",
			"work-disk-content",
			"BANGER-TEST-AGENT /run/banger/banger-agent",
			"BANGER-TEST-DONE",
		} {
			if !strings.Contains(console, want) {
				t.Errorf("console lacks %q", want)
			}
		}
		for _, bad := range []string{"-> /run/systemd/resolve", "banger-init: free initramfs"} {
			if strings.Contains(console, bad) {
				t.Errorf("console has %q", bad)
			}
		}
		out, err := exec.Command(debugfs, "-R", "cat /upper/written-by-guest", layer).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("from-the-guest")) {
			t.Errorf("guest write did not land on the layer: %v\n%s", err, out)
		}
		if t.Failed() || testing.Verbose() {
			t.Logf("console:\n%s", console)
		}
	})
	t.Run("bad parameter powers off", func(t *testing.T) {
		t.Parallel()
		// The init stops before looking for disks; the image (read-only,
		// so shared with the other boot) is enough.
		console := bootQEMU(t, qemu, k, initrd, params.Cmdline()+" banger.bogus=1", image)
		if want := "banger-init: kernel command line: unknown parameter banger.bogus"; !strings.Contains(console, want) {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	})
}

// bootQEMU boots a q35 TCG guest and returns its console once QEMU has
// exited. The first disk (the image) is read-only. A boot that outlives its deadline is killed and fails the test.
func bootQEMU(t *testing.T, qemu string, k kernel.Kernel, initrd, params string, disks ...string) string {
	t.Helper()
	consolePath := filepath.Join(t.TempDir(), "console.log")
	args := []string{
		"-M", "q35", "-accel", "tcg", "-m", "512", "-smp", "1", "-nodefaults", "-no-reboot", "-display", "none",
		"-serial", "file:" + consolePath,
		"-kernel", k.VmlinuzPath(), "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 net.ifnames=0 " + params,
		// A hub with no other port: the NIC reaches nothing outside.
		"-netdev", "hubport,id=n0,hubid=0", "-device", "virtio-net-pci,netdev=n0,mac=02:fc:00:00:00:05",
	}
	for i, d := range disks {
		serial := []string{"banger-image", "banger-layer", "banger-work"}[i]
		ro := "off"
		if i == 0 {
			ro = "on"
		}
		id := serial
		args = append(args,
			"-drive", "file="+d+",if=none,id="+id+",format=raw,readonly="+ro,
			"-device", "virtio-blk-pci,drive="+id+",serial="+serial)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	console, _ := os.ReadFile(consolePath)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("guest did not power off within 120s; console:\n%s", console)
	}
	if err != nil {
		t.Fatalf("%s %v: %v\n%s\nconsole:\n%s", qemu, args, err, stderr.Bytes(), console)
	}
	t.Logf("QEMU ran %.1fs", time.Since(start).Seconds())
	return string(console)
}
