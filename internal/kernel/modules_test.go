package kernel

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// testModuleTree is a modules directory shaped like Debian's cloud
// kernel's (names, dependencies, ext4 built in), with some modules
// compressed. It returns the directory and each module's ELF contents.
func testModuleTree(t *testing.T, withDep bool) (string, map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	mods := []struct{ path, deps string }{
		{"kernel/drivers/virtio/virtio_ring.ko", ""},
		{"kernel/drivers/virtio/virtio.ko", "virtio_ring"},
		{"kernel/drivers/virtio/virtio_pci_legacy_dev.ko", ""},
		{"kernel/drivers/virtio/virtio_pci_modern_dev.ko", ""},
		{"kernel/drivers/virtio/virtio_pci.ko", "virtio_ring,virtio_pci_modern_dev,virtio_pci_legacy_dev,virtio"},
		{"kernel/drivers/virtio/virtio_mmio.ko", "virtio,virtio_ring"},
		{"kernel/drivers/block/virtio_blk.ko", "virtio,virtio_ring"},
		{"kernel/net/core/failover.ko.gz", ""},
		{"kernel/drivers/net/net_failover.ko.zst", "failover"},
		{"kernel/drivers/net/virtio_net.ko.xz", "virtio_ring,virtio,net_failover"},
		{"kernel/drivers/char/hw_random/virtio-rng.ko", "virtio,virtio_ring"},
		{"kernel/fs/overlayfs/overlay.ko", ""},
	}
	contents := map[string][]byte{}
	var dep strings.Builder
	for _, m := range mods {
		name := ModuleName(m.path)
		ko := testModule(t, name, m.deps)
		contents[name] = ko
		data := ko
		var b bytes.Buffer
		switch filepath.Ext(m.path) {
		case ".gz":
			zw := gzip.NewWriter(&b)
			zw.Write(ko)
			zw.Close()
			data = b.Bytes()
		case ".zst":
			zw, _ := zstd.NewWriter(&b)
			zw.Write(ko)
			zw.Close()
			data = b.Bytes()
		case ".xz":
			zw, _ := xz.NewWriter(&b)
			zw.Write(ko)
			zw.Close()
			data = b.Bytes()
		}
		p := filepath.Join(dir, m.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		// modules.dep names files; list them in reverse to show that its
		// order does not leak into the result.
		dep.WriteString(m.path + ":")
		ds := strings.Split(m.deps, ",")
		for i := len(ds) - 1; i >= 0; i-- {
			for _, o := range mods {
				if ds[i] != "" && ModuleName(o.path) == ds[i] {
					dep.WriteString(" " + o.path)
				}
			}
		}
		dep.WriteString("\n")
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("modules.builtin", "kernel/fs/ext4/ext4.ko\nkernel/crypto/crc32c_generic.ko\n")
	if withDep {
		write("modules.dep", dep.String())
	}
	return dir, contents
}

func TestResolve(t *testing.T) {
	debianOrder := []string{
		"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
		"virtio_mmio", "virtio_blk", "failover", "net_failover", "virtio_net", "overlay",
	}
	tests := []struct {
		name   string
		wanted []string
		want   []string
		err    string
	}{
		{name: "guest set", wanted: []string{"virtio_pci", "virtio_mmio", "virtio_blk", "virtio_net", "overlay", "ext4"}, want: debianOrder},
		{name: "dependency first even when wanted later", wanted: []string{"virtio_blk", "virtio_ring"}, want: []string{"virtio_ring", "virtio", "virtio_blk"}},
		{name: "hyphenated name", wanted: []string{"virtio-rng"}, want: []string{"virtio_ring", "virtio", "virtio_rng"}},
		{name: "built in only", wanted: []string{"ext4", "crc32c-generic"}, want: nil},
		{name: "missing", wanted: []string{"virtio_blk", "vmw_vsock_virtio_transport"}, err: `module "vmw_vsock_virtio_transport": not in`},
	}
	for _, withDep := range []bool{true, false} {
		dir, _ := testModuleTree(t, withDep)
		ix, err := IndexModules(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ix.Close() })
		for _, tt := range tests {
			name := tt.name + "/modinfo"
			if withDep {
				name = tt.name + "/modules.dep"
			}
			t.Run(name, func(t *testing.T) {
				mods, err := ix.Resolve(tt.wanted)
				if tt.err != "" {
					if err == nil || !strings.Contains(err.Error(), tt.err) {
						t.Fatalf("error %v, want one containing %q", err, tt.err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, m := range mods {
					got = append(got, m.Name)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("load order (-want +got):\n%s", diff)
				}
			})
		}
	}
}

func TestResolveBadGraphs(t *testing.T) {
	tests := []struct {
		name string
		dep  string
		err  string
	}{
		{"cycle", "a.ko: b.ko\nb.ko: c.ko\nc.ko: a.ko\n", "cycle: a -> b -> c -> a"},
		{"missing dependency", "a.ko: b.ko\n", `module "b" (needed by a): not in`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(tt.dep), 0o644)
			ix, err := IndexModules(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer ix.Close()
			_, err = ix.Resolve([]string{"a"})
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
		})
	}
}

func TestReadModuleDecompresses(t *testing.T) {
	dir, contents := testModuleTree(t, false)
	ix, err := IndexModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	mods, err := ix.Resolve([]string{"virtio_net"})
	if err != nil {
		t.Fatal(err)
	}
	if len(mods) != 5 {
		t.Fatalf("resolved %d modules, want 5", len(mods))
	}
	for _, m := range mods {
		data, err := ix.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, contents[m.Name]) {
			t.Errorf("%s (%s): contents differ from the original module", m.Name, m.Path)
		}
	}
}

func TestReadModuleStaysInTree(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret.ko")
	os.WriteFile(outside, []byte("secret"), 0o644)
	os.Symlink(outside, filepath.Join(dir, "evil.ko"))
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte("evil.ko:\n"), 0o644)
	ix, err := IndexModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	mods, err := ix.Resolve([]string{"evil"})
	if err != nil {
		t.Fatal(err)
	}
	if data, err := ix.ReadFile(mods[0]); err == nil {
		t.Errorf("read %q through a symlink leaving the tree", data)
	}
}

func TestParseModulesDep(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Module
		err  bool
	}{
		{
			name: "debian style",
			in:   "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\nkernel/drivers/virtio/virtio_ring.ko:\nkernel/drivers/char/hw_random/virtio-rng.ko.xz: kernel/drivers/virtio/virtio.ko\n",
			want: []Module{
				{Name: "virtio_blk", Path: "kernel/drivers/block/virtio_blk.ko", Depends: []string{"virtio", "virtio_ring"}},
				{Name: "virtio_ring", Path: "kernel/drivers/virtio/virtio_ring.ko"},
				{Name: "virtio_rng", Path: "kernel/drivers/char/hw_random/virtio-rng.ko.xz", Depends: []string{"virtio"}},
			},
		},
		{name: "no colon", in: "kernel/a.ko kernel/b.ko\n", err: true},
		{name: "not a module", in: "kernel/a.o: kernel/b.ko\n", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseModulesDep(strings.NewReader(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("error %v, want error %v", err, tt.err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
