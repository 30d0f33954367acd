package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/buildinfo"
	"github.com/banger/banger/internal/client"
	"github.com/banger/banger/internal/wire"
	"github.com/google/go-cmp/cmp"
)

// fakeDaemon serves mux as bangerd for a and records the requests.
type fakeDaemon struct {
	mu       sync.Mutex
	requests []string
}

func (f *fakeDaemon) record(r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
}

func serveFake(t *testing.T, a *App, mux *http.ServeMux) {
	t.Helper()
	ln, err := wire.Listen(a.Layout.DaemonSocket(), 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go (&wire.Server{Handler: mux, Version: buildinfo.Get()}).Serve(ctx, ln, time.Second)
}

func run(t *testing.T, a *App, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	code = a.Run(context.Background(), args)
	return code, a.Out.(*bytes.Buffer).String(), a.Err.(*bytes.Buffer).String()
}

func writeFile(t *testing.T, p, data string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanKernelUpload(t *testing.T) {
	dir := t.TempDir()
	deb := writeFile(t, filepath.Join(dir, "linux-image.deb"), "!<arch>")
	boot := filepath.Join(dir, "boot")
	vmlinuz := writeFile(t, filepath.Join(boot, "vmlinuz-6.1.0-9"), "kernel")
	writeFile(t, filepath.Join(boot, "config-6.1.0-9"), "CONFIG_X=y\n")
	plain := writeFile(t, filepath.Join(dir, "build", "bzImage"), "kernel")
	writeFile(t, filepath.Join(dir, "build", ".config"), "CONFIG_Y=y\n")
	bare := writeFile(t, filepath.Join(dir, "bare", "vmlinux"), "kernel")
	mods := filepath.Join(dir, "lib", "modules", "6.1.0-9")
	writeFile(t, filepath.Join(mods, "modules.builtin"), "x\n")

	tests := []struct {
		name, deb, kernel, modules string
		want                       kernelUpload
		err, hint                  string
	}{
		{name: "nothing", err: "nothing to import", hint: "--deb FILE"},
		{name: "both", deb: deb, kernel: vmlinuz, err: "exclude each other"},
		{name: "deb with modules", deb: deb, modules: mods, err: "--modules goes with --kernel"},
		{name: "missing deb", deb: filepath.Join(dir, "nope.deb"), err: "no such file"},
		{name: "deb is a dir", deb: dir, err: "not a regular file"},
		{name: "modules root instead of version", kernel: vmlinuz, modules: filepath.Dir(mods), err: "not named by a kernel version", hint: "/lib/modules/6.1.0"},
		{name: "deb", deb: deb, want: kernelUpload{format: client.KernelDeb, source: "linux-image.deb", deb: deb, total: 7}},
		{name: "boot layout", kernel: vmlinuz, modules: mods, want: kernelUpload{format: client.KernelFiles, source: "vmlinuz-6.1.0-9",
			kernel: vmlinuz, config: filepath.Join(boot, "config-6.1.0-9"), modules: mods, total: 6 + 11 + 2}},
		{name: "build tree", kernel: plain, want: kernelUpload{format: client.KernelFiles, source: "bzImage",
			kernel: plain, config: filepath.Join(dir, "build", ".config"), total: 6 + 11}},
		{name: "no config", kernel: bare, want: kernelUpload{format: client.KernelFiles, source: "vmlinux", kernel: bare, total: 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := planKernelUpload(tt.deb, tt.kernel, tt.modules)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(api.HintOf(err), tt.hint) {
					t.Fatalf("error %v (hint %q), want %q (hint %q)", err, api.HintOf(err), tt.err, tt.hint)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(kernelUpload{})); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

// tarNames lists an archive as "name" or "name -> link".
func tarNames(t *testing.T, r io.Reader) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		n := h.Name
		if h.Typeflag == tar.TypeSymlink {
			n += " -> " + h.Linkname
		}
		out = append(out, n)
	}
}

func TestKernelImportCommand(t *testing.T) {
	a := testApp(t)
	dir := t.TempDir()
	vmlinuz := writeFile(t, filepath.Join(dir, "boot", "vmlinuz-6.1.0-9"), "kernel image")
	writeFile(t, filepath.Join(dir, "boot", "config-6.1.0-9"), "CONFIG_X=y\n")
	mods := filepath.Join(dir, "modules", "6.1.0-9")
	writeFile(t, filepath.Join(mods, "kernel", "virtio.ko"), "ko")
	os.Symlink("/usr/src/linux-headers", filepath.Join(mods, "build"))

	var got struct {
		query   string
		entries []string
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/kernels/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") == "taken" {
			wire.WriteJSON(w, 200, api.Kernel{Name: "taken"})
			return
		}
		wire.WriteError(w, api.Errorf(api.CodeNotFound, "kernel not found"), "")
	})
	mux.HandleFunc("POST /v1/kernels/{name}", func(w http.ResponseWriter, r *http.Request) {
		got.query = r.URL.RawQuery
		got.entries = tarNames(t, r.Body)
		st := wire.NewStream(w)
		st.Progress("import kernel", "received", 0, 0)
		st.Finish(r.Context(), api.Kernel{Name: r.PathValue("name"), Version: "6.1.0-9", VmlinuxSize: 3 << 20, HasModules: true, ModulesSize: 2048}, nil)
	})
	serveFake(t, a, mux)

	code, stdout, stderr := run(t, a, "kernel", "import", "mine", "--kernel", vmlinuz, "--modules", mods)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got.query != "format=files&source=vmlinuz-6.1.0-9" {
		t.Errorf("query %q", got.query)
	}
	want := []string{"kernel", "config", "modules/", "modules/6.1.0-9/", "modules/6.1.0-9/build -> /usr/src/linux-headers",
		"modules/6.1.0-9/kernel/", "modules/6.1.0-9/kernel/virtio.ko"}
	if diff := cmp.Diff(want, got.entries); diff != "" {
		t.Errorf("uploaded archive (-want +got):\n%s", diff)
	}
	if stdout != "imported kernel mine (6.1.0-9, vmlinux 3.0 MiB, modules 2.0 KiB)\n" {
		t.Errorf("stdout %q", stdout)
	}
	if !strings.Contains(stderr, "==> upload") || !strings.Contains(stderr, "==> import kernel") {
		t.Errorf("stderr %q, want a line per stage", stderr)
	}

	a2 := testApp(t)
	a2.Layout = a.Layout
	code, _, stderr = run(t, a2, "kernel", "import", "taken", "--kernel", vmlinuz)
	if code != 1 || !strings.Contains(stderr, `kernel "taken" already exists`) || !strings.Contains(stderr, "banger kernel rm taken") {
		t.Errorf("import over a taken name: exit %d, %q", code, stderr)
	}
}

func TestArtefactCommandsRefuseBeforeCalling(t *testing.T) {
	for _, tt := range []struct {
		args []string
		err  string
	}{
		{[]string{"kernel", "import", "k"}, "nothing to import"},
		{[]string{"kernel", "import"}, "accepts 1 arg"},
		{[]string{"kernel", "show"}, "accepts 1 arg"},
		{[]string{"kernel", "rm", "a", "b"}, "accepts 1 arg"},
		{[]string{"image", "pull", "a", "b"}, "accepts at most 1 arg"},
		{[]string{"image", "rm"}, "accepts 1 arg"},
		{[]string{"image", "list", "x"}, "unknown command"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			a := testApp(t) // no daemon: any call would fail differently
			code, _, stderr := run(t, a, tt.args...)
			if code != 1 || !strings.Contains(stderr, tt.err) || strings.Count(strings.TrimSpace(stderr), "\n") > 1 {
				t.Errorf("exit %d, stderr %q; want one error line containing %q", code, stderr, tt.err)
			}
		})
	}
}

func TestImagePullAndList(t *testing.T) {
	a := testApp(t)
	f := &fakeDaemon{}
	img := api.Image{Name: "debian-bookworm", Kernel: "debian-cloud", SizeBytes: 3 << 30, WorkSeedBytes: 64 << 20,
		Created: time.Now().Add(-2 * time.Hour), UsedBy: []string{"web"}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/images/{name}/pull", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		st := wire.NewStream(w)
		for _, s := range []string{"pull", "debootstrap", "debootstrap", "mkfs rootfs"} {
			st.Progress(s, "step", 0, 0)
		}
		st.Finish(r.Context(), img, nil)
	})
	mux.HandleFunc("GET /v1/images", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		wire.WriteJSON(w, 200, []api.Image{img})
	})
	serveFake(t, a, mux)

	// No NAME: the config's default_image_name (here, the built-in one).
	code, stdout, stderr := run(t, a, "image", "pull")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.HasPrefix(stdout, "image debian-bookworm ready (kernel debian-cloud, rootfs 3.0 GiB) in ") {
		t.Errorf("stdout %q", stdout)
	}
	if diff := cmp.Diff("==> pull: step\n==> debootstrap: step\n==> mkfs rootfs: step\n", stderr); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}

	a.Out = &bytes.Buffer{}
	code, stdout, _ = run(t, a, "image", "list")
	want := "NAME             KERNEL        ROOTFS   WORK SEED  CREATED  USED BY\n" +
		"debian-bookworm  debian-cloud  3.0 GiB  64.0 MiB   2h ago   web\n"
	if code != 0 || stdout != want {
		t.Errorf("image list: exit %d\n%s\nwant\n%s", code, stdout, want)
	}
	a.Out = &bytes.Buffer{}
	code, stdout, _ = run(t, a, "image", "list", "--json")
	var back []api.Image
	if code != 0 || json.Unmarshal([]byte(stdout), &back) != nil || len(back) != 1 || back[0].Name != img.Name {
		t.Errorf("image list --json: exit %d, %s", code, stdout)
	}
	if diff := cmp.Diff([]string{"POST /v1/images/debian-bookworm/pull", "GET /v1/images", "GET /v1/images"}, f.requests); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestProgressTTY(t *testing.T) {
	var b bytes.Buffer
	p := newProgress(&b, Style{}, true, 40, 0)
	now := time.Unix(0, 0)
	p.now = func() time.Time { return now }
	p.event(api.Event{Type: api.EventProgress, Stage: "debootstrap"})
	now = now.Add(time.Second)
	p.event(api.Event{Type: api.EventProgress, Stage: "debootstrap", Message: "Retrieving a package with a very long name"})
	now = now.Add(61 * time.Second)
	p.event(api.Event{Type: api.EventProgress, Stage: "upload", Current: 50, Total: 100})
	p.event(api.Event{Type: api.EventLog, Message: "a log line"})
	now = now.Add(500 * time.Millisecond)
	p.done()
	p.done() // idempotent
	p.event(api.Event{Type: api.EventProgress, Stage: "late"})
	want := "\r\x1b[K==> debootstrap (0.0s)" +
		"\r\x1b[K==> debootstrap  Retrieving a p… (1.0s)" +
		"\r\x1b[K==> debootstrap (1m2s)\n" +
		"\r\x1b[K==> upload [==========          ]  50% (0.0s)" +
		"\r\x1b[Ka log line\n" +
		"\r\x1b[K==> upload [==========          ]  50% (0.0s)" +
		"\r\x1b[K==> upload (0.5s)\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("tty output (-want +got):\n%s", diff)
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 3 << 30: "3.0 GiB", 200 << 20: "200 MiB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}
