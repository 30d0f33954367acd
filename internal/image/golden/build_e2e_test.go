package golden

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// requireE2E skips unless BANGER_E2E=1; then a missing prerequisite fails.
func requireE2E(t *testing.T) {
	t.Helper()
	if os.Getenv("BANGER_E2E") != "1" {
		t.Skip("real image build: needs root, debootstrap, npm and the Debian archive; set BANGER_E2E=1")
	}
	if os.Geteuid() != 0 {
		t.Fatal("BANGER_E2E=1: the image build needs root")
	}
	if err := Preflight(); err != nil {
		t.Fatalf("BANGER_E2E=1: %v", err)
	}
	for _, tool := range []string{"debugfs", "e2fsck", "resize2fs"} {
		if _, err := lookTool(tool); err != nil {
			t.Fatalf("BANGER_E2E=1: %v", err)
		}
	}
}

// TestBuildReal builds debian-bookworm for real. BANGER_TEST_CACHE names a
// directory that keeps the .deb and mise downloads between runs.
func TestBuildReal(t *testing.T) {
	requireE2E(t)
	// Large: not under the default TMPDIR, which may be a small tmpfs.
	base, err := os.MkdirTemp("/var/tmp", "banger-golden-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("BANGER_TEST_KEEP") == "1" {
		t.Logf("keeping %s", base)
	} else {
		t.Cleanup(func() { os.RemoveAll(base) })
	}
	cache := os.Getenv("BANGER_TEST_CACHE")
	if cache == "" {
		cache = filepath.Join(base, "cache")
	}
	logPath := filepath.Join(base, "build.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()

	var stages []string
	opts := Options{
		WorkDir:      filepath.Join(base, "work"),
		AptCacheDir:  filepath.Join(cache, "debs"),
		MiseCacheDir: filepath.Join(cache, "mise"),
		Log:          logFile,
		Progress: func(stage, msg string) {
			if msg == "" {
				stages = append(stages, stage)
				t.Logf("stage %s", stage)
			}
		},
	}
	dest := filepath.Join(base, "images", "debian-bookworm")
	spec := DefaultSpec()
	m, err := Build(t.Context(), spec, dest, opts)
	if err != nil {
		t.Fatalf("Build: %v (full log: %s)", err, logPath)
	}
	t.Logf("built in %.1fs: stages %+v", m.BuildSeconds, m.Stages)
	t.Logf("sizes: %+v", m.Sizes)

	want := []string{StageDebootstrap, StageInstall, StageConfigure, StageMise, StageRootfs, StageWorkSeed, StageKernel}
	if diff := cmp.Diff(want, stages); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
	onDisk, err := ReadManifest(dest)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, onDisk); diff != "" {
		t.Errorf("manifest on disk differs from the returned one (-returned +disk):\n%s", diff)
	}
	if m.SpecDigest != spec.Digest() || m.Kernel == "" || m.Mise.TarballSHA256 != spec.Mise.SHA256 {
		t.Errorf("manifest: digest %s kernel %q mise %+v", m.SpecDigest, m.Kernel, m.Mise)
	}
	for _, p := range append(slices.Clone(spec.Packages), "linux-image-"+m.Kernel) {
		if m.Packages[p] == "" {
			t.Errorf("manifest has no version for package %s", p)
		}
	}

	// Nothing left behind.
	if left, _ := filepath.Glob(filepath.Join(opts.WorkDir, "build-*")); len(left) > 0 {
		t.Errorf("work dirs left: %v", left)
	}
	if left, _ := filepath.Glob(dest + ".tmp-*"); len(left) > 0 {
		t.Errorf("staging dirs left: %v", left)
	}
	if mounts, err := listMounts(base, procMountinfo); err != nil || len(mounts) > 0 {
		t.Errorf("mounts left under %s: %v %v", base, mounts, err)
	}

	rootfs := filepath.Join(dest, RootfsFile)
	seed := filepath.Join(dest, WorkSeedFile)
	for _, img := range []string{rootfs, seed} {
		if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
			t.Errorf("e2fsck -fn %s: %v\n%s", img, err, out)
		}
	}

	for _, p := range []string{"/usr/bin/docker", "/usr/bin/git", "/usr/bin/jq", "/usr/bin/tmux", "/usr/sbin/sshd",
		"/usr/local/bin/mise", SSHDropIn, "/etc/systemd/system/" + KeygenUnit,
		"/etc/systemd/system/multi-user.target.wants/ssh.service",
		"/etc/systemd/system/multi-user.target.wants/docker.service",
		"/etc/systemd/system/ssh.service.wants/" + KeygenUnit,
		"/boot/vmlinuz-" + m.Kernel} {
		if !debugfsExists(t, rootfs, p) {
			t.Errorf("rootfs: %s missing", p)
		}
	}
	if got := debugfsCat(t, rootfs, SSHDropIn); got != sshdDropIn {
		t.Errorf("rootfs %s = %q, want %q", SSHDropIn, got, sshdDropIn)
	}
	if got := debugfsCat(t, rootfs, "/etc/machine-id"); got != "" {
		t.Errorf("rootfs /etc/machine-id = %q, want empty", got)
	}
	if got := debugfsCat(t, rootfs, "/etc/fstab"); got != "" {
		t.Errorf("rootfs /etc/fstab = %q, want empty", got)
	}
	for _, name := range debugfsLs(t, rootfs, "/etc/ssh") {
		if strings.HasPrefix(name, "ssh_host_") {
			t.Errorf("rootfs has host key /etc/ssh/%s", name)
		}
	}
	for _, p := range []string{"/boot/initrd.img-" + m.Kernel, "/var/lib/apt/lists/lock", "/var/cache/apt/pkgcache.bin", "/usr/share/man/man1"} {
		if debugfsExists(t, rootfs, p) {
			t.Errorf("rootfs: %s should be gone", p)
		}
	}
	if got := debugfsLs(t, rootfs, "/root"); !slices.Equal(got, []string{".", ".."}) {
		t.Errorf("rootfs /root = %v, want empty", got)
	}
	if got := debugfsMode(t, rootfs, "/"); got != "0755" {
		t.Errorf("rootfs / mode %s, want 0755", got)
	}
	if got := debugfsMode(t, rootfs, "/root"); got != "0700" {
		t.Errorf("rootfs /root mode %s, want 0700", got)
	}
	if got := debugfsMode(t, rootfs, "/usr/local/bin/mise"); got != "0755" {
		t.Errorf("rootfs mise mode %s, want 0755", got)
	}
	if got := debugfsCat(t, rootfs, "/etc/shadow"); !strings.HasPrefix(got, "root:!") {
		t.Errorf("root password not locked: %q", strings.SplitN(got, "\n", 2)[0])
	}

	seedFiles := debugfsLs(t, seed, "/")
	for _, want := range []string{".bashrc", ".profile", ".ssh"} {
		if !slices.Contains(seedFiles, want) {
			t.Errorf("work seed / = %v, missing %s", seedFiles, want)
		}
	}
	if got := debugfsMode(t, seed, "/"); got != "0700" {
		t.Errorf("work seed root mode %s, want 0700", got)
	}
	if got := debugfsMode(t, seed, "/.ssh"); got != "0700" {
		t.Errorf("work seed .ssh mode %s, want 0700", got)
	}

	// Each VM gets a copy of the seed grown to its disk size.
	grown := filepath.Join(base, "work.ext4")
	if out, err := exec.Command("cp", "--sparse=always", seed, grown).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	if err := os.Truncate(grown, 4<<30); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{{"e2fsck", "-fp", grown}, {"resize2fs", grown}, {"e2fsck", "-fn", grown}} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Errorf("%v: %v\n%s", argv, err, out)
		}
	}
	if got := debugfsLs(t, grown, "/"); !slices.Contains(got, ".bashrc") {
		t.Errorf("grown work disk / = %v", got)
	}

	kdir := filepath.Join(dest, KernelDir)
	for _, p := range []string{KernelImage, KernelConfig} {
		if fi, err := os.Stat(filepath.Join(kdir, p)); err != nil || fi.Size() == 0 {
			t.Errorf("kernel/%s: %v", p, err)
		}
	}
	mods := filepath.Join(kdir, KernelModules, "lib", "modules", m.Kernel)
	var found bool
	filepath.WalkDir(mods, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == "virtio_blk.ko" {
			found = true
		}
		return nil
	})
	if !found {
		t.Errorf("no virtio_blk.ko under %s", mods)
	}
	if _, err := os.Stat(filepath.Join(mods, "modules.dep")); err != nil {
		t.Errorf("modules.dep: %v", err)
	}
}

func debugfs(t *testing.T, img, request string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("debugfs", "-R", request, img)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("debugfs -R %q %s: %v\n%s", request, img, err, stderr.String())
	}
	return stdout.String()
}

func debugfsExists(t *testing.T, img, path string) bool {
	return strings.Contains(debugfs(t, img, "stat "+path), "Inode:")
}

func debugfsCat(t *testing.T, img, path string) string {
	if !debugfsExists(t, img, path) {
		t.Errorf("%s: %s missing", img, path)
		return "<missing>"
	}
	return debugfs(t, img, "cat "+path)
}

// debugfsMode returns the permission bits of path, e.g. "0700".
func debugfsMode(t *testing.T, img, path string) string {
	out := debugfs(t, img, "stat "+path)
	_, rest, ok := strings.Cut(out, "Mode:")
	if !ok {
		t.Errorf("%s: no mode for %s", img, path)
		return ""
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func debugfsLs(t *testing.T, img, dir string) []string {
	var names []string
	for _, n := range strings.Fields(debugfs(t, img, "ls -p "+dir)) {
		// ls -p prints /inode/mode/uid/gid/name/size/ per entry.
		parts := strings.Split(strings.Trim(n, "/"), "/")
		if len(parts) >= 5 {
			names = append(names, parts[4])
		}
	}
	slices.Sort(names)
	return names
}
