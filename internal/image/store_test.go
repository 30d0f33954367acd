package image

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/kernel"
	"github.com/google/go-cmp/cmp"
)

const (
	testGolden  = "debian-bookworm"
	testVersion = "6.1.0-99-test-amd64"
)

// testVmlinux is a minimal x86_64 ELF kernel with a version banner; flavour
// makes kernels that differ.
func testVmlinux(flavour string) []byte {
	var body bytes.Buffer
	body.WriteString("Linux version " + testVersion + " (builder@host) (gcc 12) #1 SMP " + flavour + "\n\x00")
	body.Write(bytes.Repeat([]byte("kernel text "), 512))
	var b bytes.Buffer
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: 1,
		Entry: 0x1000000, Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: 1, Shentsize: 64,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	size := uint64(64 + 56 + body.Len())
	p := elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Vaddr: 0x1000000, Paddr: 0x1000000, Filesz: size, Memsz: size, Align: 0x1000}
	binary.Write(&b, binary.LittleEndian, h)
	binary.Write(&b, binary.LittleEndian, p)
	b.Write(body.Bytes())
	return b.Bytes()
}

// fakeBuilder writes a build output the way the root helper leaves one
// and records each call.
type fakeBuilder struct {
	dir     string
	calls   atomic.Int32
	flavour string        // of the kernel it writes
	fail    string        // "": succeed; "early": fail before writing; "partial": fail after writing some
	noKern  bool          // leave the kernel out
	delay   time.Duration // how long a build takes
}

func (f *fakeBuilder) BuildGolden(ctx context.Context, name string, progress func(api.Event)) error {
	f.calls.Add(1)
	progress(api.Event{Type: api.EventProgress, Stage: "debootstrap"})
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	if f.fail == "early" {
		return errors.New("debootstrap: exit status 1")
	}
	dest := filepath.Join(f.dir, name)
	files := map[string][]byte{
		RootFSFile:   bytes.Repeat([]byte{1}, 4096),
		WorkSeedFile: bytes.Repeat([]byte{2}, 1024),
	}
	if !f.noKern {
		files["kernel/vmlinux"] = testVmlinux(f.flavour)
		files["kernel/config"] = []byte("CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n")
		files["kernel/modules/lib/modules/"+testVersion+"/modules.builtin"] = []byte("kernel/fs/ext4/ext4.ko\n")
	}
	if f.fail != "partial" {
		files[ManifestFile] = []byte(`{"name": "` + name + `", "spec_digest": "0123456789abcdef0123", "kernel_version": "` + testVersion + `"}`)
	}
	for p, data := range files {
		p = filepath.Join(dest, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	if f.fail == "partial" {
		return errors.New("mkfs: no space left on device")
	}
	return nil
}

type testStores struct {
	images  *Store
	kernels *kernel.Store
	builder *fakeBuilder
	base    string
}

func newStores(t *testing.T, b *fakeBuilder, inUse func(string) []string) testStores {
	t.Helper()
	base := t.TempDir()
	ks, err := kernel.NewStore(kernel.StoreConfig{Dir: filepath.Join(base, "kernels")})
	if err != nil {
		t.Fatal(err)
	}
	b.dir = filepath.Join(base, "images")
	is, err := NewStore(StoreConfig{Dir: b.dir, Kernels: ks, Builder: b, InUse: inUse})
	if err != nil {
		t.Fatal(err)
	}
	return testStores{is, ks, b, base}
}

func ls(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func TestEnsureBuildsOnce(t *testing.T) {
	st := newStores(t, &fakeBuilder{delay: 100 * time.Millisecond}, nil)
	const n = 5
	imgs := make([]Image, n)
	errs := make([]error, n)
	events := make([][]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			imgs[i], errs[i] = st.images.Ensure(t.Context(), testGolden, func(ev api.Event) {
				events[i] = append(events[i], ev.Stage)
			})
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if diff := cmp.Diff(imgs[0], imgs[i]); diff != "" {
			t.Errorf("caller %d saw another image (-0 +%d):\n%s", i, i, diff)
		}
	}
	if c := st.builder.calls.Load(); c != 1 {
		t.Errorf("%d builds for %d concurrent pulls, want 1", c, n)
	}
	img := imgs[0]
	var compact bytes.Buffer
	json.Compact(&compact, img.Manifest)
	img.Manifest = compact.Bytes()
	dir := filepath.Join(st.builder.dir, testGolden)
	want := Image{
		Name: testGolden, Dir: dir, RootFS: filepath.Join(dir, RootFSFile), WorkSeed: filepath.Join(dir, WorkSeedFile),
		Kernel: DefaultKernelName, SizeBytes: 4096, WorkSeedBytes: 1024,
		Source:   "built by bangerd-root from Debian packages (spec 0123456789ab)",
		Manifest: json.RawMessage(`{"name":"debian-bookworm","spec_digest":"0123456789abcdef0123","kernel_version":"` + testVersion + `"}`),
	}
	if diff := cmp.Diff(want, img, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Created" }, cmp.Ignore())); diff != "" {
		t.Errorf("image (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{RecordFile, ManifestFile, RootFSFile, WorkSeedFile}, ls(t, dir)); diff != "" {
		t.Errorf("image dir (-want +got):\n%s", diff)
	}
	k, err := st.kernels.Get(t.Context(), DefaultKernelName)
	if err != nil || k.Version != testVersion || !k.HasModules || !k.MMIOCmdlineDevices {
		t.Errorf("kernel %+v, %v", k, err)
	}
	// Everyone but the builder waited, and said so.
	waited := 0
	for _, ev := range events {
		if len(ev) > 0 && ev[0] == StagePull && !contains(ev, "debootstrap") {
			waited++
		}
	}
	if waited != n-1 {
		t.Errorf("%d callers waited, want %d: %q", waited, n-1, events)
	}
	// Cached now.
	if _, err := st.images.Ensure(t.Context(), testGolden, nil); err != nil || st.builder.calls.Load() != 1 {
		t.Errorf("pull of a local image: %v, %d builds", err, st.builder.calls.Load())
	}
	list, err := st.images.List(t.Context())
	if err != nil || len(list) != 1 || list[0].Name != testGolden {
		t.Errorf("List = %v, %v", list, err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestEnsureFailureLeavesNothing(t *testing.T) {
	for _, tt := range []struct {
		name string
		b    *fakeBuilder
		err  string
	}{
		{"builder fails early", &fakeBuilder{fail: "early"}, "debootstrap: exit status 1"},
		{"builder fails half way", &fakeBuilder{fail: "partial"}, "no space left"},
		{"build without kernel", &fakeBuilder{noKern: true}, "has no vmlinuz or vmlinux"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := newStores(t, tt.b, nil)
			_, err := st.images.Ensure(t.Context(), testGolden, nil)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
			if left := ls(t, st.builder.dir); len(left) != 0 {
				t.Errorf("images dir holds %v", left)
			}
			if left := ls(t, filepath.Join(st.base, "kernels")); len(left) != 0 {
				t.Errorf("kernels dir holds %v", left)
			}
			if _, err := st.images.Get(t.Context(), testGolden); !errors.Is(err, api.ErrNotFound) {
				t.Errorf("Get after a failed pull: %v", err)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		st := newStores(t, &fakeBuilder{delay: time.Minute}, nil)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		if _, err := st.images.Ensure(ctx, testGolden, nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error %v", err)
		}
		if left := ls(t, st.builder.dir); len(left) != 0 {
			t.Errorf("images dir holds %v", left)
		}
	})
}

// A build output whose registration was interrupted is registered by the
// next pull, which the helper answers at once because the image exists.
func TestEnsureCompletesLeftover(t *testing.T) {
	st := newStores(t, &fakeBuilder{}, nil)
	if err := st.builder.BuildGolden(t.Context(), testGolden, func(api.Event) {}); err != nil {
		t.Fatal(err)
	}
	st.builder.fail = "early" // a second build would fail
	if _, err := st.images.Ensure(t.Context(), testGolden, nil); err == nil {
		t.Fatal("want the builder's error")
	}
	// The complete output was kept; with a builder that finds it there...
	st.builder.fail = ""
	img, err := st.images.Ensure(t.Context(), testGolden, nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.Kernel != DefaultKernelName {
		t.Errorf("kernel %q", img.Kernel)
	}
}

func TestEnsureKernelNames(t *testing.T) {
	t.Run("same kernel reused", func(t *testing.T) {
		st := newStores(t, &fakeBuilder{}, nil)
		src := filepath.Join(t.TempDir(), "k")
		os.MkdirAll(src, 0o755)
		os.WriteFile(filepath.Join(src, "vmlinux"), testVmlinux(""), 0o644)
		if _, err := st.kernels.ImportFiles(t.Context(), DefaultKernelName, filepath.Join(src, "vmlinux"), ""); err != nil {
			t.Fatal(err)
		}
		img, err := st.images.Ensure(t.Context(), testGolden, nil)
		if err != nil || img.Kernel != DefaultKernelName {
			t.Fatalf("image kernel %q, %v", img.Kernel, err)
		}
		if diff := cmp.Diff([]string{DefaultKernelName}, ls(t, filepath.Join(st.base, "kernels"))); diff != "" {
			t.Errorf("kernels (-want +got):\n%s", diff)
		}
	})
	t.Run("name taken by another kernel", func(t *testing.T) {
		st := newStores(t, &fakeBuilder{flavour: "new"}, nil)
		src := filepath.Join(t.TempDir(), "vmlinux")
		os.WriteFile(src, testVmlinux("old"), 0o644)
		if _, err := st.kernels.ImportFiles(t.Context(), DefaultKernelName, src, ""); err != nil {
			t.Fatal(err)
		}
		img, err := st.images.Ensure(t.Context(), testGolden, nil)
		if err != nil {
			t.Fatal(err)
		}
		k, err := st.kernels.Get(t.Context(), img.Kernel)
		if err != nil || !strings.HasPrefix(img.Kernel, DefaultKernelName+"-") || len(img.Kernel) != len(DefaultKernelName)+13 {
			t.Fatalf("image kernel %q (%v)", img.Kernel, err)
		}
		if !strings.HasPrefix(k.VmlinuxSHA256, strings.TrimPrefix(img.Kernel, DefaultKernelName+"-")) {
			t.Errorf("kernel %s has sha256 %s", img.Kernel, k.VmlinuxSHA256)
		}
	})
}

func TestStoreGetListRemove(t *testing.T) {
	users := map[string][]string{}
	st := newStores(t, &fakeBuilder{}, func(name string) []string { return users[name] })
	ctx := t.Context()
	for _, tt := range []struct {
		name string
		code api.Code
		hint string
	}{
		{testGolden, api.CodeNotFound, "banger image pull debian-bookworm"},
		{"ubuntu-2404", api.CodeNotFound, "banger image list"},
		{"Bad_Name", api.CodeBadRequest, "a-z, 0-9"},
		{"-x", api.CodeBadRequest, "a-z, 0-9"},
	} {
		_, err := st.images.Get(ctx, tt.name)
		if api.CodeOf(err) != tt.code || !strings.Contains(api.HintOf(err), tt.hint) {
			t.Errorf("Get(%q) = %v (code %s, hint %q), want %s with a hint containing %q", tt.name, err, api.CodeOf(err), api.HintOf(err), tt.code, tt.hint)
		}
	}
	// Ensure knows how to build only the golden image.
	if _, err := st.images.Ensure(ctx, "ubuntu-2404", nil); !errors.Is(err, api.ErrNotFound) || st.builder.calls.Load() != 0 {
		t.Errorf("Ensure of an unknown image: %v, %d builds", err, st.builder.calls.Load())
	}
	if _, err := st.images.Ensure(ctx, testGolden, nil); err != nil {
		t.Fatal(err)
	}
	// A directory without image.json is not an image.
	os.MkdirAll(filepath.Join(st.builder.dir, "half"), 0o755)
	list, err := st.images.List(ctx)
	if err != nil || len(list) != 1 {
		t.Errorf("List = %v, %v", list, err)
	}

	users[testGolden] = []string{"web"}
	if err := st.images.Remove(ctx, testGolden); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "web") {
		t.Errorf("remove in use: %v", err)
	}
	delete(users, testGolden)
	if err := st.images.Remove(ctx, testGolden); err != nil {
		t.Fatal(err)
	}
	if err := st.images.Remove(ctx, testGolden); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("second remove: %v", err)
	}
	if diff := cmp.Diff([]string{"half"}, ls(t, st.builder.dir)); diff != "" {
		t.Errorf("images dir (-want +got):\n%s", diff)
	}
	// The kernel stays.
	if _, err := st.kernels.Get(ctx, DefaultKernelName); err != nil {
		t.Errorf("kernel after image removal: %v", err)
	}
}

func TestStoreSweep(t *testing.T) {
	st := newStores(t, &fakeBuilder{}, nil)
	stale := filepath.Join(st.builder.dir, ".old"+deleteInfix+"abc", "rootfs.ext4")
	os.MkdirAll(filepath.Dir(stale), 0o755)
	os.WriteFile(stale, []byte("x"), 0o644)
	if _, err := NewStore(StoreConfig{Dir: st.builder.dir, Kernels: st.kernels}); err != nil {
		t.Fatal(err)
	}
	if left := ls(t, st.builder.dir); len(left) != 0 {
		t.Errorf("images dir holds %v", left)
	}
}

// The builder's error reaches the caller with its code and hint.
func TestEnsureKeepsHint(t *testing.T) {
	st := newStores(t, &fakeBuilder{}, nil)
	st.images.builder = hintBuilder{}
	_, err := st.images.Ensure(t.Context(), testGolden, nil)
	if !errors.Is(err, api.ErrUnavailable) || api.HintOf(err) != "start the root helper" {
		t.Fatalf("error %v (code %s, hint %q)", err, api.CodeOf(err), api.HintOf(err))
	}
}

type hintBuilder struct{}

func (hintBuilder) BuildGolden(context.Context, string, func(api.Event)) error {
	return api.WithHint(api.Errorf(api.CodeUnavailable, "bangerd-root is not running"), "start the root helper")
}
