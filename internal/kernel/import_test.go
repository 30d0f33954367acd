package kernel

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

const testVersion = "6.1.0-99-test-amd64"

type tarEntry struct {
	name, body, link string
	typ              byte
}

func reg(name, body string) tarEntry { return tarEntry{name: name, body: body, typ: tar.TypeReg} }
func dir(name string) tarEntry       { return tarEntry{name: name, typ: tar.TypeDir} }
func symlink(name, link string) tarEntry {
	return tarEntry{name: name, link: link, typ: tar.TypeSymlink}
}

// testDeb writes a .deb whose data.tar (compressed as comp) holds entries.
func testDeb(t *testing.T, comp string, entries []tarEntry) string {
	t.Helper()
	var data bytes.Buffer
	tw := tar.NewWriter(&data)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body)), ModTime: time.Unix(1, 0)}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	var z bytes.Buffer
	switch comp {
	case "xz":
		w, _ := xz.NewWriter(&z)
		w.Write(data.Bytes())
		w.Close()
	case "zst":
		w, _ := zstd.NewWriter(&z)
		w.Write(data.Bytes())
		w.Close()
	case "gz":
		w := gzip.NewWriter(&z)
		w.Write(data.Bytes())
		w.Close()
	}
	var deb bytes.Buffer
	deb.WriteString(arMagic)
	member := func(name string, body []byte) {
		fmt.Fprintf(&deb, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(body))
		deb.Write(body)
		if len(body)%2 == 1 {
			deb.WriteByte('\n')
		}
	}
	member("debian-binary", []byte("2.0\n"))
	member("control.tar.xz", []byte("odd-sized control"))
	member("data.tar."+comp, z.Bytes())
	p := filepath.Join(t.TempDir(), "linux-image-test.deb")
	if err := os.WriteFile(p, deb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// debianEntries is the skeleton of a Debian linux-image package.
func debianEntries(t *testing.T, config string) []tarEntry {
	vmlinuz := testBzImage(0x020f, testVersion, compress(t, "lz4", testVmlinux(t, testVersion, "")))
	md := "./lib/modules/" + testVersion + "/"
	return []tarEntry{
		dir("./"), dir("./boot/"),
		reg("./boot/vmlinuz-"+testVersion, string(vmlinuz)),
		reg("./boot/config-"+testVersion, config),
		reg("./boot/System.map-"+testVersion, "ffffffff81000000 T _text\n"),
		dir("./lib/"), dir("./lib/modules/"), dir(md),
		reg(md+"modules.builtin", "kernel/fs/ext4/ext4.ko\n"),
		// Parent directories of a file need not come first.
		reg(md+"kernel/drivers/virtio/virtio_ring.ko", string(testModule(t, "virtio_ring", ""))),
		reg(md+"kernel/drivers/virtio/virtio.ko", string(testModule(t, "virtio", "virtio_ring"))),
		symlink(md+"kernel/virtio-alias.ko", "drivers/virtio/virtio.ko"),
		symlink(md+"build", "/usr/src/linux-headers-"+testVersion),
		dir("./usr/"), dir("./usr/share/doc/linux-image/"),
		reg("./usr/share/doc/linux-image/changelog.Debian.gz", "not wanted"),
	}
}

// tree lists a directory as "path" for directories (with a slash),
// regular files and "path -> target" for symlinks.
func tree(t *testing.T, root string) []string {
	var out []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case rel == ".":
		case d.IsDir():
			out = append(out, rel+"/")
		case d.Type()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out = append(out, rel+" -> "+l)
		default:
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func TestImportDeb(t *testing.T) {
	config := "CONFIG_VIRTIO_MMIO=m\n# CONFIG_IKCONFIG is not set\nCONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n"
	md := "modules/lib/modules/" + testVersion + "/"
	wantTree := []string{
		"config", "kernel.json", "modules/", "modules/lib/", "modules/lib/modules/", md,
		md + "kernel/", md + "kernel/drivers/", md + "kernel/drivers/virtio/",
		md + "kernel/drivers/virtio/virtio.ko", md + "kernel/drivers/virtio/virtio_ring.ko",
		md + "kernel/virtio-alias.ko -> drivers/virtio/virtio.ko",
		md + "modules.builtin", "vmlinux", "vmlinuz",
	}
	vmlinux := testVmlinux(t, testVersion, "")
	for _, comp := range []string{"xz", "zst", "gz"} {
		t.Run(comp, func(t *testing.T) {
			deb := testDeb(t, comp, debianEntries(t, config))
			dest := filepath.Join(t.TempDir(), "debian-6.1")
			k, err := ImportDeb(t.Context(), deb, dest)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantTree, tree(t, dest)); diff != "" {
				t.Errorf("layout (-want +got):\n%s", diff)
			}
			want := Kernel{
				Dir: dest, Name: "debian-6.1", Version: testVersion, Source: deb,
				VmlinuxSHA256: sha256hex(vmlinux), VmlinuxSize: int64(len(vmlinux)),
				HasModules: true, HasConfig: true, MMIOCmdlineDevices: true,
			}
			ignore := cmpopts.IgnoreFields(Kernel{}, "Created", "VmlinuzSize", "ModulesSize")
			if diff := cmp.Diff(want, k, ignore); diff != "" {
				t.Errorf("kernel (-want +got):\n%s", diff)
			}
			if k.VmlinuzSize == 0 || k.ModulesSize == 0 || time.Since(k.Created) > time.Minute {
				t.Errorf("sizes or time unset: %+v", k)
			}
			loaded, err := Load(dest)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(k, loaded); diff != "" {
				t.Errorf("Load differs from the import (-import +load):\n%s", diff)
			}
			if got := k.ModulesDir(); got != filepath.Join(dest, md) {
				t.Errorf("ModulesDir = %s", got)
			}
			ix, err := IndexModules(k.ModulesDir())
			if err != nil {
				t.Fatal(err)
			}
			defer ix.Close()
			mods, err := ix.Resolve([]string{"virtio", "ext4"})
			if err != nil || len(mods) != 2 {
				t.Errorf("resolve in the imported tree: %v %v", mods, err)
			}
		})
	}
}

func sha256hex(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

func TestImportDebRefuses(t *testing.T) {
	md := "./lib/modules/" + testVersion + "/"
	tests := []struct {
		name  string
		extra []tarEntry
		drop  string // entry name to leave out
		err   string
	}{
		{name: "traversal", extra: []tarEntry{reg("./lib/modules/../../etc/passwd", "x")}, err: "path traversal"},
		{name: "absolute name", extra: []tarEntry{reg("/etc/passwd", "x")}, err: "absolute name"},
		{name: "absolute symlink", extra: []tarEntry{symlink(md+"kernel/evil.ko", "/etc/shadow")}, err: "absolute target"},
		{name: "escaping symlink", extra: []tarEntry{symlink(md+"kernel/evil", "../../../..")}, err: "outside the modules tree"},
		{name: "device node", extra: []tarEntry{{name: md + "kernel/sda", typ: tar.TypeBlock}}, err: "device nodes"},
		{name: "fifo", extra: []tarEntry{{name: md + "kernel/fifo", typ: tar.TypeFifo}}, err: "device nodes"},
		{name: "hard link out of tree", extra: []tarEntry{{name: md + "kernel/pw", link: "etc/passwd", typ: tar.TypeLink}}, err: "outside the modules tree"},
		{name: "two kernels", extra: []tarEntry{reg("./boot/vmlinuz-6.2.0", "x")}, err: "two kernels"},
		{name: "modules of another version", extra: []tarEntry{reg("./lib/modules/6.2.0/modules.builtin", "")}, err: "two kernels"},
		{name: "no kernel", drop: "./boot/vmlinuz-" + testVersion, err: "no boot/vmlinuz"},
		{name: "kernel not a kernel", drop: "./boot/vmlinuz-" + testVersion, extra: []tarEntry{reg("./boot/vmlinuz-"+testVersion, "MZ not really")}, err: "not an x86_64 kernel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var entries []tarEntry
			for _, e := range debianEntries(t, "") {
				if e.name != tt.drop {
					entries = append(entries, e)
				}
			}
			deb := testDeb(t, "gz", append(entries, tt.extra...))
			parent := t.TempDir()
			_, err := ImportDeb(t.Context(), deb, filepath.Join(parent, "k"))
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
			if left, _ := os.ReadDir(parent); len(left) != 0 {
				t.Errorf("failed import left %v behind", left)
			}
		})
	}
	t.Run("not a deb", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "x.deb")
		os.WriteFile(p, []byte("PK\x03\x04 zip"), 0o644)
		if _, err := ImportDeb(t.Context(), p, filepath.Join(t.TempDir(), "k")); err == nil || !strings.Contains(err.Error(), "not a .deb") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("dest exists", func(t *testing.T) {
		dest := t.TempDir()
		_, err := ImportDeb(t.Context(), testDeb(t, "gz", debianEntries(t, "")), dest)
		if !errors.Is(err, fs.ErrExist) {
			t.Fatalf("error %v, want fs.ErrExist", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		parent := t.TempDir()
		_, err := ImportDeb(ctx, testDeb(t, "gz", debianEntries(t, "")), filepath.Join(parent, "k"))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
	})
}

func TestImportFiles(t *testing.T) {
	modules, _ := testModuleTree(t, false)
	mv := filepath.Join(t.TempDir(), testVersion)
	if err := copyTree(t.Context(), modules, mv); err != nil {
		t.Fatal(err)
	}
	os.Symlink("/usr/src/linux-headers", filepath.Join(mv, "build"))

	write := func(dir, name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vmlinux := testVmlinux(t, testVersion, "")
	ikconfig := testVmlinux(t, testVersion, "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n")

	boot := t.TempDir()
	bz := write(boot, "vmlinuz-"+testVersion, testBzImage(0x020f, testVersion, compress(t, "zstd", vmlinux)))
	write(boot, "config-"+testVersion, []byte("# CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is not set\n"))
	elfDir := t.TempDir()
	elfPlain := write(elfDir, "vmlinux", vmlinux)
	elfIK := write(t.TempDir(), "vmlinux", ikconfig)
	otherVersion := write(t.TempDir(), "vmlinuz", testBzImage(0x020f, "6.9.0", compress(t, "gzip", vmlinux)))

	tests := []struct {
		name       string
		kernel     string
		modules    string
		want       Kernel
		wantVmlinx []byte
		err        string
	}{
		{name: "bzImage with modules and /boot config", kernel: bz, modules: mv, wantVmlinx: vmlinux,
			want: Kernel{Version: testVersion, HasModules: true, HasConfig: true}},
		{name: "elf without modules", kernel: elfPlain, wantVmlinx: vmlinux,
			want: Kernel{Version: testVersion}},
		{name: "elf with embedded config", kernel: elfIK, modules: mv, wantVmlinx: ikconfig,
			want: Kernel{Version: testVersion, HasModules: true, HasConfig: true, MMIOCmdlineDevices: true}},
		{name: "version mismatch", kernel: otherVersion, modules: mv, err: "version 6.9.0 but modules directory is for " + testVersion},
		{name: "not a kernel", kernel: write(t.TempDir(), "k", []byte(strings.Repeat("no", 600))), err: "not an x86_64 kernel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "k")
			k, err := ImportFiles(t.Context(), tt.kernel, tt.modules, dest)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := Kernel{Version: k.Version, HasModules: k.HasModules, HasConfig: k.HasConfig, MMIOCmdlineDevices: k.MMIOCmdlineDevices}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("kernel (-want +got):\n%s", diff)
			}
			data, err := os.ReadFile(k.VmlinuxPath())
			if err != nil || !bytes.Equal(data, tt.wantVmlinx) {
				t.Errorf("vmlinux differs from the source (%v)", err)
			}
			if k.HasModules {
				if _, err := os.Lstat(filepath.Join(k.ModulesDir(), "build")); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("headers symlink copied: %v", err)
				}
				if _, err := os.Stat(filepath.Join(k.ModulesDir(), "kernel/drivers/net/virtio_net.ko.xz")); err != nil {
					t.Error(err)
				}
			}
			var rec map[string]any
			raw, _ := os.ReadFile(filepath.Join(dest, RecordFile))
			if err := json.Unmarshal(raw, &rec); err != nil || rec["version"] != testVersion {
				t.Errorf("kernel.json: %s (%v)", raw, err)
			}
		})
	}
}
