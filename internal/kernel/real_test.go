package kernel

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestRealKernelDeb imports a real Debian kernel package named by
// BANGER_TEST_KERNEL_DEB and resolves the guest modules from its metadata.
func TestRealKernelDeb(t *testing.T) {
	deb := os.Getenv("BANGER_TEST_KERNEL_DEB")
	if deb == "" {
		t.Skip("BANGER_TEST_KERNEL_DEB is not set (path of a linux-image-*.deb)")
	}
	dest := filepath.Join(t.TempDir(), "k")
	k, err := ImportDeb(t.Context(), deb, dest)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel %s: vmlinux %d bytes, vmlinuz %d, modules %d, mmio cmdline devices %v",
		k.Version, k.VmlinuxSize, k.VmlinuzSize, k.ModulesSize, k.MMIOCmdlineDevices)
	if !k.HasModules || !k.HasConfig || k.VmlinuzSize == 0 {
		t.Fatalf("incomplete import: %+v", k)
	}
	// The version is found in either kernel form without a modules tree.
	for i, src := range []string{k.VmlinuzPath(), k.VmlinuxPath()} {
		kf, err := ImportFiles(t.Context(), src, "", filepath.Join(t.TempDir(), "files"))
		if err != nil {
			t.Fatal(err)
		}
		if kf.Version != k.Version || kf.VmlinuxSHA256 != k.VmlinuxSHA256 {
			t.Errorf("import %d of %s: version %s sha256 %s, want %s %s", i, src, kf.Version, kf.VmlinuxSHA256, k.Version, k.VmlinuxSHA256)
		}
	}
	ix, err := IndexModules(k.ModulesDir())
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	mods, err := ix.Resolve(GuestModules())
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for i, m := range mods {
		for _, d := range m.Depends {
			if !ix.Builtin(d) && !slices.ContainsFunc(mods[:i], func(p Module) bool { return p.Name == d }) {
				t.Errorf("%s is loaded before its dependency %s", m.Name, d)
			}
		}
		order = append(order, m.Name)
	}
	t.Logf("load order: %v", order)
	for _, w := range GuestModules() {
		if !ix.Builtin(w) && !slices.Contains(order, w) {
			t.Errorf("%s is neither loaded nor built in", w)
		}
	}
}
