package golden

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// tree lists the files and symlinks under dir as "path" or "path -> target".
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out = append(out, rel+" -> "+target)
		case !d.IsDir():
			out = append(out, rel)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

func TestCleanupRemovesBuildLeftovers(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{
		"etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub", "etc/ssh/sshd_config",
		"boot/initrd.img-6.1.0-50-cloud-amd64", "boot/vmlinuz-6.1.0-50-cloud-amd64",
		"var/cache/apt/pkgcache.bin", "var/cache/apt/archives/git_1_amd64.deb", "var/cache/apt/archives/lock",
		"var/lib/apt/lists/deb_dists_bookworm_InRelease", "var/lib/dpkg/status", "var/lib/dpkg/status-old",
		"var/log/dpkg.log", "var/log/apt/history.log", "var/log/journal/.keep",
		"var/lib/dbus/machine-id", "var/lib/systemd/random-seed",
		"tmp/x", "usr/share/man/man1/git.1.gz", "usr/bin/git",
		"usr/share/doc/git/copyright", "usr/share/doc/git/changelog.gz", "usr/share/doc/git/contrib/x",
		"usr/share/locale/locale.alias", "usr/share/locale/de/LC_MESSAGES/git.mo",
	} {
		mustWrite(t, filepath.Join(root, p), "x")
	}
	os.Symlink("boot/initrd.img-6.1.0-50-cloud-amd64", filepath.Join(root, "initrd.img"))
	os.Symlink("boot/vmlinuz-6.1.0-50-cloud-amd64", filepath.Join(root, "vmlinuz"))
	os.Symlink("git", filepath.Join(root, "usr/share/doc/git-man"))

	if err := removeGlobs(root, removedPaths()); err != nil {
		t.Fatal(err)
	}
	if err := pruneDirs(root, keptInPrunedDirs()); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"boot/vmlinuz-6.1.0-50-cloud-amd64",
		"etc/ssh/sshd_config",
		"usr/bin/git",
		"usr/share/doc/git-man -> git",
		"usr/share/doc/git/copyright",
		"usr/share/locale/locale.alias",
		"var/cache/apt/archives/lock",
		"var/lib/dpkg/status",
		"var/log/journal/.keep",
		"vmlinuz -> boot/vmlinuz-6.1.0-50-cloud-amd64",
	}
	if diff := cmp.Diff(want, tree(t, root)); diff != "" {
		t.Errorf("left in the root (-want +got):\n%s", diff)
	}
}

func TestMoveHome(t *testing.T) {
	root, seed := t.TempDir(), t.TempDir()
	mustWrite(t, filepath.Join(root, "root", ".bashrc"), "# debian\n")
	mustWrite(t, filepath.Join(root, "root", ".profile"), "# profile\n")
	if err := moveHome(root, seed); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, filepath.Join(root, "root")); len(got) != 0 {
		t.Errorf("image /root not empty: %v", got)
	}
	for _, d := range []string{filepath.Join(root, "root"), seed, filepath.Join(seed, ".ssh")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v, want 0700", d, fi.Mode(), err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(seed, ".bashrc"))
	if !strings.HasPrefix(string(b), "# debian\n") || !strings.HasSuffix(string(b), bashrcMise) {
		t.Errorf(".bashrc = %q", b)
	}
	if diff := cmp.Diff([]string{".bashrc", ".profile"}, tree(t, seed)); diff != "" {
		t.Errorf("seed (-want +got):\n%s", diff)
	}
}

func TestFindKernel(t *testing.T) {
	root := t.TempDir()
	if _, err := findKernel(root); err == nil {
		t.Error("found a kernel in an empty root")
	}
	mustWrite(t, filepath.Join(root, "boot", "vmlinuz-6.1.0-50-cloud-amd64"), "k")
	if v, err := findKernel(root); err != nil || v != "6.1.0-50-cloud-amd64" {
		t.Errorf("findKernel = %q, %v", v, err)
	}
	mustWrite(t, filepath.Join(root, "boot", "vmlinuz-6.1.0-51-cloud-amd64"), "k")
	if _, err := findKernel(root); err == nil {
		t.Error("two kernels accepted")
	}
}

func TestKernelCopy(t *testing.T) {
	root, out := t.TempDir(), t.TempDir()
	v := "6.1.0-50-cloud-amd64"
	mustWrite(t, filepath.Join(root, "boot", "vmlinuz-"+v), "bzImage")
	mustWrite(t, filepath.Join(root, "boot", "config-"+v), "CONFIG_EXT4_FS=y\n")
	mustWrite(t, filepath.Join(root, "usr/lib/modules", v, "kernel/drivers/block/virtio_blk.ko"), "ko")
	mustWrite(t, filepath.Join(root, "usr/lib/modules", v, "modules.dep"), "")
	os.Symlink("usr/lib", filepath.Join(root, "lib"))
	os.Symlink("/usr/src/linux-headers-"+v, filepath.Join(root, "usr/lib/modules", v, "build"))
	b := &builder{root: root, out: out, kernelVersion: v}
	if err := b.kernel(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/config",
		"kernel/modules/lib/modules/" + v + "/build -> /usr/src/linux-headers-" + v,
		"kernel/modules/lib/modules/" + v + "/kernel/drivers/block/virtio_blk.ko",
		"kernel/modules/lib/modules/" + v + "/modules.dep",
		"kernel/vmlinuz",
	}
	if diff := cmp.Diff(want, tree(t, out)); diff != "" {
		t.Errorf("kernel dir (-want +got):\n%s", diff)
	}
	if b.m.Kernel != v || b.m.Sizes.KernelAndModules <= 0 {
		t.Errorf("manifest kernel %q size %d", b.m.Kernel, b.m.Sizes.KernelAndModules)
	}
}

func TestPruneAptCache(t *testing.T) {
	cache := t.TempDir()
	for _, f := range []string{"git_1%3a2.39.5-0+deb12u3_amd64.deb", "git_1%3a2.39.2-1.1_amd64.deb", "notes.txt"} {
		mustWrite(t, filepath.Join(cache, f), "")
	}
	debpaths := filepath.Join(t.TempDir(), "debpaths")
	mustWrite(t, debpaths, "git /var/cache/apt/archives/git_1%3a2.39.5-0+deb12u3_amd64.deb\n")
	debs, err := readDebPaths(debpaths)
	if err != nil {
		t.Fatal(err)
	}
	b := &builder{opts: Options{AptCacheDir: cache}, debs: debs}
	if err := b.pruneAptCache(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"git_1%3a2.39.5-0+deb12u3_amd64.deb", "notes.txt"}, tree(t, cache)); diff != "" {
		t.Errorf("cache (-want +got):\n%s", diff)
	}
}

func TestParsePackageVersions(t *testing.T) {
	got := parsePackageVersions([]byte("git\t1:2.39.5-0+deb12u3\njq\t1.6-2.1+deb12u2\nbroken line\nnone\t\n"))
	want := map[string]string{"git": "1:2.39.5-0+deb12u3", "jq": "1.6-2.1+deb12u2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
