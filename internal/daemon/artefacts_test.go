package daemon

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/buildinfo"
	"github.com/banger/banger/internal/client"
	"github.com/banger/banger/internal/paths"
	"github.com/banger/banger/internal/roothelper"
	"github.com/banger/banger/internal/wire"
	"github.com/google/go-cmp/cmp"
)

const testVersion = "6.1.0-99-test-amd64"

// testELF is a minimal x86_64 executable whose one segment holds body.
func testELF(body []byte) []byte {
	var b bytes.Buffer
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: 1,
		Entry: 0x1000000, Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: 1, Shentsize: 64,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	size := uint64(64 + 56 + len(body))
	p := elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Vaddr: 0x1000000, Paddr: 0x1000000, Filesz: size, Memsz: size, Align: 0x1000}
	binary.Write(&b, binary.LittleEndian, h)
	binary.Write(&b, binary.LittleEndian, p)
	b.Write(body)
	return b.Bytes()
}

// testVmlinux is an ELF "kernel" with a version banner.
func testVmlinux() []byte {
	return testELF([]byte("Linux version " + testVersion + " (builder@host) (gcc 12) #1 SMP\n\x00" + strings.Repeat("kernel text ", 512)))
}

// testDaemon serves a daemon with only its artefact routes' dependencies
// (no VMs, no state store) on a socket in a temp layout.
func testDaemon(t *testing.T) (*Daemon, *client.Client) {
	t.Helper()
	base := t.TempDir()
	l := paths.Layout{
		StateDir: filepath.Join(base, "state"), CacheDir: filepath.Join(base, "cache"),
		RuntimeDir: filepath.Join(base, "run"), HelperDir: filepath.Join(base, "helper"),
		EtcDir: filepath.Join(base, "etc"), LibDir: filepath.Join(base, "lib"),
	}
	for _, d := range []string{l.StateDir, l.RuntimeDir, l.HelperDir, l.LibDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	d := &Daemon{
		layout: l,
		log:    slog.New(slog.DiscardHandler),
		helper: &wire.Client{Socket: l.HelperSocket(), Name: "bangerd-root", Version: buildinfo.Get()},
	}
	serve(t, l.DaemonSocket(), d.routes())
	return d, client.New(l.DaemonSocket())
}

func serve(t *testing.T, socket string, h http.Handler) {
	t.Helper()
	ln, err := wire.Listen(socket, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		(&wire.Server{Handler: h, Version: buildinfo.Get()}).Serve(ctx, ln, time.Second)
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// filesUpload is a KernelFiles archive of an ELF kernel, with a modules
// tree or with every driver built in.
func filesUpload(t *testing.T, withModules bool) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	entries := []struct {
		name string
		data []byte
	}{
		{"kernel", testVmlinux()},
		{"modules/", nil},
		{"modules/" + testVersion + "/", nil},
		{"modules/" + testVersion + "/modules.builtin", []byte("kernel/fs/ext4/ext4.ko\n")},
	}
	if !withModules {
		entries = entries[:1]
	}
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.data))}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(e.data)
	}
	tw.Close()
	return b.Bytes()
}

func TestKernelRoutes(t *testing.T) {
	_, c := testDaemon(t)
	ctx := t.Context()
	ks, err := c.ListKernels(ctx)
	if err != nil || ks == nil || len(ks) != 0 {
		t.Fatalf("empty store: %#v, %v", ks, err)
	}
	var events []string
	k, err := c.ImportKernel(ctx, "mine", client.KernelFiles, bytes.NewReader(filesUpload(t, true)), "vmlinux-test", func(ev api.Event) {
		events = append(events, ev.Stage)
	})
	if err != nil {
		t.Fatal(err)
	}
	if k.Name != "mine" || k.Version != testVersion || !k.HasModules || k.Source != "upload of vmlinux-test" {
		t.Errorf("imported %+v", k)
	}
	if _, err := os.Stat(k.Vmlinux); err != nil {
		t.Error(err)
	}
	if diff := cmp.Diff([]string{"import kernel"}, events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	got, err := c.GetKernel(ctx, "mine")
	if err != nil || !cmp.Equal(got, k) {
		t.Errorf("GetKernel = %+v, %v", got, err)
	}

	big := bytes.Repeat([]byte("x"), 16<<20)
	for _, tt := range []struct {
		name, kname, format string
		body                []byte
		code                api.Code
		msg                 string
	}{
		// Refused before the body is read: still a clean answer.
		{"name taken", "mine", client.KernelDeb, big, api.CodeAlreadyExists, `kernel "mine" already exists`},
		{"bad name", "Mine", client.KernelDeb, big, api.CodeBadRequest, "not a valid kernel name"},
		{"bad format", "other", "zip", big, api.CodeBadRequest, "unknown kernel upload format"},
		// Refused after: through the event stream.
		{"not a deb", "other", client.KernelDeb, []byte("hello"), api.CodeOperationFault, "not a .deb"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.ImportKernel(ctx, tt.kname, tt.format, bytes.NewReader(tt.body), "x", nil)
			if api.CodeOf(err) != tt.code || err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v (code %s), want %s containing %q", err, api.CodeOf(err), tt.code, tt.msg)
			}
		})
	}

	if err := c.DeleteKernel(ctx, "mine"); err != nil {
		t.Fatal(err)
	}
	_, err = c.GetKernel(ctx, "mine")
	if !errors.Is(err, api.ErrNotFound) || api.HintOf(err) == "" {
		t.Errorf("after delete: %v (hint %q)", err, api.HintOf(err))
	}
}

// fakeHelper answers the image build route as the root helper does: a
// build output in the images dir, progress, a result.
type fakeHelper struct {
	images string
	calls  atomic.Int32
}

func (f *fakeHelper) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+roothelper.RouteImageBuild, func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		var req roothelper.ImageBuildRequest
		if err := wire.DecodeJSON(r, &req); err != nil {
			wire.WriteError(w, err, "")
			return
		}
		st := wire.NewStream(w)
		st.Progress("debootstrap", "Retrieving git", 0, 0)
		dest := filepath.Join(f.images, req.Name)
		files := map[string][]byte{
			"rootfs.ext4":    make([]byte, 8192),
			"work-seed.ext4": make([]byte, 4096),
			"manifest.json":  []byte(`{"name":"` + req.Name + `","spec_digest":"abcdefabcdef0000","kernel_version":"` + testVersion + `"}`),
			"kernel/vmlinux": testVmlinux(),
			"kernel/modules/lib/modules/" + testVersion + "/modules.builtin": []byte("kernel/fs/ext4/ext4.ko\n"),
		}
		for p, data := range files {
			p = filepath.Join(dest, p)
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, data, 0o644)
		}
		st.Finish(r.Context(), roothelper.ImageBuildResult{Name: req.Name, Dir: dest, Built: true}, nil)
	})
	return mux
}

func TestImageRoutes(t *testing.T) {
	d, c := testDaemon(t)
	helper := &fakeHelper{images: d.layout.ImagesDir()}
	serve(t, d.layout.HelperSocket(), helper.routes())
	ctx := t.Context()

	if _, err := c.PullImage(ctx, "ubuntu-2404", nil); !errors.Is(err, api.ErrNotFound) || helper.calls.Load() != 0 {
		t.Fatalf("pull of an unknown image: %v, %d helper calls", err, helper.calls.Load())
	}
	var mu sync.Mutex
	var stages []string
	img, err := c.PullImage(ctx, "debian-bookworm", func(ev api.Event) {
		mu.Lock()
		defer mu.Unlock()
		if len(stages) == 0 || stages[len(stages)-1] != ev.Stage {
			stages = append(stages, ev.Stage)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"pull", "debootstrap", "register"}, stages); diff != "" {
		t.Errorf("stages (-want +got):\n%s", diff)
	}
	if img.Kernel != "debian-cloud" || img.SizeBytes != 8192 || img.RootFS != filepath.Join(d.layout.ImagesDir(), "debian-bookworm", "rootfs.ext4") {
		t.Errorf("image %+v", img)
	}
	// Local now: a plain answer, no build.
	again, err := c.PullImage(ctx, "debian-bookworm", func(api.Event) { t.Error("progress for a local image") })
	if err != nil || again.Name != img.Name || helper.calls.Load() != 1 {
		t.Errorf("second pull: %v, %d helper calls", err, helper.calls.Load())
	}
	imgs, err := c.ListImages(ctx)
	if err != nil || len(imgs) != 1 {
		t.Errorf("ListImages = %v, %v", imgs, err)
	}
	k, err := c.GetKernel(ctx, "debian-cloud")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"image debian-bookworm"}, k.UsedBy); diff != "" {
		t.Errorf("kernel users (-want +got):\n%s", diff)
	}
	if err := c.DeleteKernel(ctx, "debian-cloud"); !errors.Is(err, api.ErrConflict) {
		t.Errorf("delete of the image's kernel: %v", err)
	}
	if err := c.DeleteImage(ctx, "debian-bookworm"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteKernel(ctx, "debian-cloud"); err != nil {
		t.Errorf("delete of the kernel once the image is gone: %v", err)
	}
}

// The daemon's initramfs builder is guest/initramfs.
func TestInitramfsWiring(t *testing.T) {
	d, c := testDaemon(t)
	if _, err := c.ImportKernel(t.Context(), "k", client.KernelFiles, bytes.NewReader(filesUpload(t, false)), "x", nil); err != nil {
		t.Fatal(err)
	}
	agent := d.layout.AgentBinary()
	if err := os.WriteFile(agent, testELF([]byte("agent")), 0o755); err != nil {
		t.Fatal(err)
	}
	kernels, _, err := d.artefacts()
	if err != nil {
		t.Fatal(err)
	}
	k, err := kernels.Get(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	p, err := kernels.Initramfs(t.Context(), k, agent)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 6)
	if _, err := io.ReadFull(zr, head); err != nil || string(head) != "070701" {
		t.Errorf("initramfs starts %q (%v), want a newc cpio", head, err)
	}
}

func TestArtefactNames(t *testing.T) {
	d, c := testDaemon(t)
	if _, err := c.ImportKernel(t.Context(), "k1", client.KernelFiles, bytes.NewReader(filesUpload(t, false)), "x", nil); err != nil {
		t.Fatal(err)
	}
	for kind, want := range map[string][]string{"kernel": {"k1"}, "image": {}} {
		got, err := d.artefactNames(t.Context(), kind)
		if err != nil || !cmp.Equal(want, got) {
			t.Errorf("names of %s = %q, %v; want %q", kind, got, err, want)
		}
	}
	if _, err := d.artefactNames(t.Context(), "vm"); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("vm: %v", err)
	}
}
