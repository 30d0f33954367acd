package kernel

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/google/go-cmp/cmp"
)

// kernelFiles writes a synthetic bzImage (with a config beside it) and a
// modules directory named by testVersion; it returns their paths.
func kernelFiles(t *testing.T) (bz, modulesDir string) {
	t.Helper()
	modules, _ := testModuleTree(t, false)
	modulesDir = filepath.Join(t.TempDir(), testVersion)
	if err := copyTree(t.Context(), modules, modulesDir); err != nil {
		t.Fatal(err)
	}
	boot := t.TempDir()
	bz = filepath.Join(boot, "vmlinuz-"+testVersion)
	if err := os.WriteFile(bz, testBzImage(0x020f, testVersion, compress(t, "zstd", testVmlinux(t, testVersion, ""))), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(boot, "config-"+testVersion), []byte("CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return bz, modulesDir
}

func elfKernel(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(p, testVmlinux(t, testVersion, ""), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func newTestStore(t *testing.T, cfg StoreConfig) *Store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "kernels")
	}
	s, err := NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func names(ks []Kernel) []string {
	out := []string{}
	for _, k := range ks {
		out = append(out, k.Name)
	}
	return out
}

// entries lists a directory's names, hidden ones included.
func entries(t *testing.T, dir string) []string {
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

func TestStoreLifecycle(t *testing.T) {
	users := map[string][]string{}
	var mu sync.Mutex
	s := newTestStore(t, StoreConfig{InUse: func(name string) []string {
		mu.Lock()
		defer mu.Unlock()
		return users[name]
	}})
	ctx := t.Context()
	bz, mods := kernelFiles(t)

	k1, err := s.ImportFiles(ctx, "plain", elfKernel(t), "")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := s.ImportFiles(ctx, "cloud-6.1", bz, mods)
	if err != nil {
		t.Fatal(err)
	}
	if !k2.HasModules || !k2.HasConfig || !k2.MMIOCmdlineDevices || k2.VmlinuzSize == 0 || k2.Source != bz {
		t.Errorf("imported kernel: %+v", k2)
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Kernel{k2, k1}, list); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	got, err := s.Get(ctx, "plain")
	if err != nil || !cmp.Equal(got, k1) {
		t.Errorf("Get = %+v, %v; want %+v", got, err, k1)
	}

	_, err = s.Get(ctx, "nope")
	if !errors.Is(err, api.ErrNotFound) || !strings.Contains(api.HintOf(err), "banger kernel list") {
		t.Errorf("Get missing: %v (hint %q)", err, api.HintOf(err))
	}
	_, err = s.ImportFiles(ctx, "plain", elfKernel(t), "")
	if !errors.Is(err, api.ErrAlreadyExists) {
		t.Errorf("import over an existing name: %v", err)
	}

	mu.Lock()
	users["cloud-6.1"] = []string{"web", "db"}
	mu.Unlock()
	err = s.Remove(ctx, "cloud-6.1")
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "web, db") {
		t.Errorf("remove in use: %v", err)
	}
	if _, err := s.Get(ctx, "cloud-6.1"); err != nil {
		t.Errorf("refused removal removed it: %v", err)
	}
	mu.Lock()
	delete(users, "cloud-6.1")
	mu.Unlock()
	if err := s.Remove(ctx, "cloud-6.1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "cloud-6.1"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("second remove: %v", err)
	}
	list, _ = s.List(ctx)
	if diff := cmp.Diff([]string{"plain"}, names(list)); diff != "" {
		t.Errorf("after remove (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"plain"}, entries(t, s.dir)); diff != "" {
		t.Errorf("store dir (-want +got):\n%s", diff)
	}
}

func TestStoreNames(t *testing.T) {
	s := newTestStore(t, StoreConfig{})
	kf := elfKernel(t)
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"debian-cloud", true},
		{"6.1.0-28-cloud-amd64", true},
		{strings.Repeat("k", 63), true},
		{strings.Repeat("k", 64), false},
		{"", false},
		{"Debian", false},
		{"-x", false},
		{".hidden", false},
		{"..", false},
		{"a/b", false},
		{"a b", false},
		{"a_b", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.ImportFiles(t.Context(), tt.name, kf, "")
			if tt.ok && err != nil {
				t.Fatalf("valid name refused: %v", err)
			}
			if !tt.ok && (!errors.Is(err, api.ErrBadRequest) || api.HintOf(err) == "") {
				t.Fatalf("invalid name: %v (hint %q), want bad_request with a hint", err, api.HintOf(err))
			}
			for _, op := range []func() error{
				func() error { _, err := s.Get(t.Context(), tt.name); return err },
				func() error { return s.Remove(t.Context(), tt.name) },
			} {
				if err := op(); !tt.ok && !errors.Is(err, api.ErrBadRequest) {
					t.Errorf("invalid name got past validation: %v", err)
				}
			}
		})
	}
}

func TestStoreConcurrentImport(t *testing.T) {
	s := newTestStore(t, StoreConfig{})
	bz, mods := kernelFiles(t)
	const n = 6
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { _, errs[i] = s.ImportFiles(t.Context(), "same", bz, mods) })
	}
	wg.Wait()
	won, lost := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, api.ErrAlreadyExists):
			lost++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if won != 1 || lost != n-1 {
		t.Errorf("%d imports won and %d got already_exists, want 1 and %d", won, lost, n-1)
	}
	if diff := cmp.Diff([]string{"same"}, entries(t, s.dir)); diff != "" {
		t.Errorf("store dir (-want +got):\n%s", diff)
	}
}

func TestStoreSweepsStaleEntries(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "kernels")
	s := newTestStore(t, StoreConfig{Dir: dir})
	if _, err := s.ImportFiles(t.Context(), "k", elfKernel(t), ""); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".k2.import-123/vmlinux", ".k3.upload-9/kernel.deb", ".k4.delete-ab/kernel.json", "k/.initrd-tmp-77"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, ".keep"), nil, 0o644) // not ours: left alone
	if _, err := NewStore(StoreConfig{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{".keep", "k"}, entries(t, dir)); diff != "" {
		t.Errorf("store dir after reopening (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"kernel.json", "vmlinux"}, entries(t, filepath.Join(dir, "k"))); diff != "" {
		t.Errorf("kernel dir after reopening (-want +got):\n%s", diff)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("store dir mode %v (%v), want 0700", fi.Mode(), err)
	}
}

func TestStoreLockCancel(t *testing.T) {
	s := newTestStore(t, StoreConfig{})
	unlock, err := s.locks.Lock(t.Context(), "busy")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = s.ImportFiles(ctx, "busy", elfKernel(t), "")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("import while the name is locked: %v, want the deadline", err)
	}
}

func TestStoreAdopt(t *testing.T) {
	s := newTestStore(t, StoreConfig{})
	bz, mods := kernelFiles(t)
	// An image build's kernel/ directory.
	src := filepath.Join(t.TempDir(), "kernel")
	if err := copyTree(t.Context(), mods, treeDir(src, testVersion)); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(bz)
	os.WriteFile(filepath.Join(src, VmlinuzFile), data, 0o644)
	os.WriteFile(filepath.Join(src, ConfigFile), []byte("CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n"), 0o644)
	before := tree(t, src)

	k, err := s.Adopt(t.Context(), "debian-cloud", src)
	if err != nil {
		t.Fatal(err)
	}
	if !k.HasModules || !k.HasConfig || !k.MMIOCmdlineDevices || k.Version != testVersion || k.VmlinuzSize != int64(len(data)) {
		t.Errorf("adopted kernel: %+v", k)
	}
	if diff := cmp.Diff(before, tree(t, src)); diff != "" {
		t.Errorf("Adopt changed its source (-before +after):\n%s", diff)
	}
	sum, err := VmlinuxDigest(t.Context(), filepath.Join(src, VmlinuzFile))
	if err != nil || sum != k.VmlinuxSHA256 {
		t.Errorf("VmlinuxDigest = %s, %v; the import recorded %s", sum, err, k.VmlinuxSHA256)
	}
	if _, err := s.Adopt(t.Context(), "debian-cloud", src); !errors.Is(err, api.ErrAlreadyExists) {
		t.Errorf("second adopt: %v", err)
	}
	if _, err := s.Adopt(t.Context(), "empty", t.TempDir()); err == nil || !strings.Contains(err.Error(), "has no vmlinuz or vmlinux") {
		t.Errorf("adopt of an empty dir: %v", err)
	}
	if diff := cmp.Diff([]string{"debian-cloud"}, entries(t, s.dir)); diff != "" {
		t.Errorf("store dir (-want +got):\n%s", diff)
	}
}

// uploadTar builds an UploadFiles archive.
func uploadTar(t *testing.T, kernelData []byte, modulesDir string, extra ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	add := func(h *tar.Header, body []byte) {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	if kernelData != nil {
		add(&tar.Header{Name: "kernel", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(kernelData))}, kernelData)
		config := []byte("CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n")
		add(&tar.Header{Name: "config", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(config))}, config)
	}
	if modulesDir != "" {
		add(&tar.Header{Name: "modules/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
		filepath.Walk(modulesDir, func(p string, fi os.FileInfo, err error) error {
			rel, _ := filepath.Rel(filepath.Dir(modulesDir), p)
			name := "modules/" + filepath.ToSlash(rel)
			if fi.IsDir() {
				add(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
				return nil
			}
			data, _ := os.ReadFile(p)
			add(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}, data)
			return nil
		})
	}
	for _, e := range extra {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		add(h, []byte(e.body))
	}
	tw.Close()
	return b.Bytes()
}

func TestStoreImportUpload(t *testing.T) {
	bz, mods := kernelFiles(t)
	bzData, _ := os.ReadFile(bz)
	debData, _ := os.ReadFile(testDeb(t, "xz", debianEntries(t, "CONFIG_X=y\n")))
	tests := []struct {
		name, format string
		body         []byte
		want         []string // tree of the imported kernel, "" entries skipped
		err          string
		code         api.Code
	}{
		{name: "deb", format: UploadDeb, body: debData},
		{name: "files with modules", format: UploadFiles, body: uploadTar(t, bzData, mods)},
		{name: "files kernel only", format: UploadFiles, body: uploadTar(t, bzData, "")},
		{name: "unknown format", format: "zip", body: debData, err: "unknown kernel upload format", code: api.CodeBadRequest},
		{name: "not a deb", format: UploadDeb, body: []byte("hello"), err: "not a .deb", code: api.CodeOperationFault},
		{name: "not a tar", format: UploadFiles, body: bytes.Repeat([]byte("x"), 2048), err: "not a valid tar", code: api.CodeBadRequest},
		{name: "no kernel", format: UploadFiles, body: uploadTar(t, nil, mods), err: "no kernel file", code: api.CodeBadRequest},
		{name: "traversal", format: UploadFiles, body: uploadTar(t, bzData, "", reg("modules/../../etc/x", "x")), err: "path traversal", code: api.CodeBadRequest},
		{name: "stray entry", format: UploadFiles, body: uploadTar(t, bzData, "", reg("etc/passwd", "x")), err: "unexpected entry", code: api.CodeBadRequest},
		{name: "escaping symlink", format: UploadFiles, body: uploadTar(t, bzData, mods, symlink("modules/"+testVersion+"/evil", "../../..")), err: "outside the modules tree", code: api.CodeBadRequest},
		{name: "hard link out", format: UploadFiles, body: uploadTar(t, bzData, mods, tarEntry{name: "modules/" + testVersion + "/k", link: "kernel", typ: tar.TypeLink}), err: "outside the modules tree", code: api.CodeBadRequest},
		{name: "two versions", format: UploadFiles, body: uploadTar(t, bzData, mods, reg("modules/6.9.9/x.ko", "x")), err: "two kernels", code: api.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t, StoreConfig{})
			var stages []string
			k, err := s.ImportUpload(t.Context(), "up", tt.format, bytes.NewReader(tt.body), "my-kernel.file", func(stage, msg string) {
				stages = append(stages, stage)
			})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || api.CodeOf(err) != tt.code {
					t.Fatalf("error %v (code %s), want %s containing %q", err, api.CodeOf(err), tt.code, tt.err)
				}
				if left := entries(t, s.dir); len(left) != 0 {
					t.Errorf("failed upload left %v", left)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Source != "my-kernel.file" || k.Version != testVersion || k.VmlinuzSize == 0 || !k.HasConfig {
				t.Errorf("kernel %+v", k)
			}
			if tt.name == "files with modules" && (!k.HasModules || !k.MMIOCmdlineDevices) {
				t.Errorf("modules or config lost: %+v", k)
			}
			if diff := cmp.Diff([]string{"import kernel"}, stages); diff != "" {
				t.Errorf("progress (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"up"}, entries(t, s.dir)); diff != "" {
				t.Errorf("store dir (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("name taken", func(t *testing.T) {
		s := newTestStore(t, StoreConfig{})
		if _, err := s.ImportFiles(t.Context(), "up", elfKernel(t), ""); err != nil {
			t.Fatal(err)
		}
		_, err := s.ImportUpload(t.Context(), "up", UploadDeb, bytes.NewReader(debData), "x", nil)
		if !errors.Is(err, api.ErrAlreadyExists) {
			t.Fatalf("error %v", err)
		}
		if diff := cmp.Diff([]string{"up"}, entries(t, s.dir)); diff != "" {
			t.Errorf("store dir (-want +got):\n%s", diff)
		}
	})
}
