package roothelper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/banger/banger/internal/api"
)

// init turns the test binary, run under the name "jailer", into a stand-in
// jailer (before TestMain, which belongs to the whole package): it records
// its arguments and environment in the jail it was told about, prints a
// line on its output (the console log) and runs until killed, as the
// Firecracker it would have become.
func init() {
	if filepath.Base(os.Args[0]) != "jailer" {
		return
	}
	args := os.Args[1:]
	val := func(name string) string {
		for i, a := range args {
			if a == name && i+1 < len(args) {
				return args[i+1]
			}
		}
		return ""
	}
	root := filepath.Join(val("--chroot-base-dir"), filepath.Base(val("--exec-file")), val("--id"), "root")
	b, _ := json.Marshal(map[string]any{"args": args, "env": os.Environ()})
	if err := os.WriteFile(filepath.Join(root, "jailer.json"), b, 0o644); err != nil {
		fmt.Println("fake jailer:", err)
		os.Exit(1)
	}
	fmt.Println("fake jailer: running")
	signal.Ignore(syscall.SIGHUP)
	select {}
}

// jailerFixture is a helper whose owner has a kernel, a disk and a console
// log, and root-owned jailer and firecracker binaries.
type jailerFixture struct {
	s                   *Server
	cfg                 Config
	jailer, firecracker string
	kernel, disk        string
	console, runDir     string
}

func newJailerFixture(t *testing.T) *jailerFixture {
	t.Helper()
	if os.Geteuid() != 0 {
		require(t, "jailer staging needs root (hard links of another user's files, chown)")
	}
	cfg := testConfig(t)
	fx := &jailerFixture{cfg: cfg}
	bin := filepath.Join(filepath.Dir(cfg.Layout.StateDir), "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fx.jailer = filepath.Join(bin, "jailer")
	fx.firecracker = filepath.Join(bin, "firecracker")
	copyFile(t, self, fx.jailer, 0o755)
	copyFile(t, self, fx.firecracker, 0o755)
	fx.kernel = filepath.Join(cfg.Layout.StateDir, "kernels", "k", "vmlinux")
	fx.disk = filepath.Join(cfg.Layout.StateDir, "vms", "a", "work.ext4")
	fx.console = filepath.Join(cfg.Layout.StateDir, "vms", "a", "console.log")
	fx.runDir = filepath.Join(cfg.Layout.RuntimeDir, "vms", "f1")
	for _, f := range []string{fx.kernel, fx.disk, fx.console} {
		os.MkdirAll(filepath.Dir(f), 0o755)
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(f, cfg.OwnerUID, cfg.OwnerGID); err != nil {
			t.Fatal(err)
		}
	}
	fx.s, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fx.s.Close() })
	return fx
}

// require skips, or fails under BANGER_E2E=1.
func require(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("BANGER_E2E") == "1" {
		t.Fatalf("missing prerequisite: %s", why)
	}
	t.Skipf("skipping: %s", why)
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func (fx *jailerFixture) request() JailerLaunchRequest {
	return JailerLaunchRequest{
		ID: "f1", Jailer: fx.jailer, Firecracker: fx.firecracker,
		Files: []string{fx.kernel, fx.disk}, Dirs: []string{fx.runDir},
		APISocket: filepath.Join(fx.runDir, "fc.sock"), ConsoleLog: fx.console,
	}
}

func TestLaunchJailer(t *testing.T) {
	fx := newJailerFixture(t)
	ctx := t.Context()
	got, err := fx.s.LaunchJailer(ctx, fx.request())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Kill(got.PID, unix.SIGKILL) })
	root := filepath.Join(fx.cfg.Layout.StateDir+"-jailer", "firecracker", "f1", "root")
	if got.Root != root {
		t.Errorf("root %s, want %s", got.Root, root)
	}
	if st, err := procStartTime(got.PID); err != nil || st != got.StartTime {
		t.Errorf("start time %d, /proc says %d (%v)", got.StartTime, st, err)
	}
	if sid, _ := unix.Getsid(got.PID); sid != got.PID {
		t.Errorf("jailer in session %d, want its own", sid)
	}

	// What the jailer was given.
	var seen struct {
		Args []string `json:"args"`
		Env  []string `json:"env"`
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(root, "jailer.json"))
		if err == nil && json.Unmarshal(b, &seen) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the jailer did not run: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantArgs := []string{
		"--id", "f1", "--exec-file", fx.firecracker, "--uid", "4242", "--gid", "4243",
		"--chroot-base-dir", fx.cfg.Layout.StateDir + "-jailer",
		"--", "--api-sock", filepath.Join(fx.runDir, "fc.sock"),
	}
	if diff := cmp.Diff(wantArgs, seen.Args); diff != "" {
		t.Errorf("jailer args (-want +got):\n%s", diff)
	}
	if len(seen.Env) != 0 {
		t.Errorf("jailer environment %q, want empty", seen.Env)
	}

	// The files are the same inodes, at their host paths in the jail.
	for _, f := range []string{fx.kernel, fx.disk} {
		a, _ := os.Stat(f)
		b, err := os.Stat(filepath.Join(root, f))
		if err != nil || !os.SameFile(a, b) {
			t.Errorf("%s not linked into the jail: %v", f, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, fx.runDir), &st); err != nil || int(st.Uid) != 4242 || st.Mode&0o777 != 0o700 {
		t.Errorf("run dir in the jail: uid %d mode %o (%v), want the owner's, 0700", st.Uid, st.Mode&0o777, err)
	}
	for _, d := range []string{root, filepath.Join(root, fx.cfg.Layout.StateDir), filepath.Dir(root)} {
		if err := unix.Lstat(d, &st); err != nil || st.Uid != 0 || st.Mode&0o777 != 0o711 {
			t.Errorf("%s: uid %d mode %o (%v), want root's, 0711", d, st.Uid, st.Mode&0o777, err)
		}
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(fx.console)
		if strings.Contains(string(b), "fake jailer: running") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("console log: %q", b)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A second launch of the same VM replaces the jail.
	unix.Kill(got.PID, unix.SIGKILL)
	again, err := fx.s.LaunchJailer(ctx, fx.request())
	if err != nil {
		t.Fatalf("relaunch: %v", err)
	}
	unix.Kill(again.PID, unix.SIGKILL)

	if err := fx.s.CleanupJail(ctx, "f1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Dir(root)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("jail still there: %v", err)
	}
	if err := fx.s.CleanupJail(ctx, "f1"); err != nil {
		t.Errorf("cleaning a jail that is gone: %v", err)
	}
	if _, err := os.Stat(fx.kernel); err != nil {
		t.Errorf("cleanup took the kernel with it: %v", err)
	}
}

func TestLaunchJailerRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, fx *jailerFixture, r *JailerLaunchRequest)
		want  string
	}{
		{"a path as id", func(_ *testing.T, _ *jailerFixture, r *JailerLaunchRequest) { r.ID = "../x" }, "is not a VM id"},
		{"a jailer others can write", func(t *testing.T, fx *jailerFixture, r *JailerLaunchRequest) { os.Chmod(fx.jailer, 0o757) }, "writable by nobody else"},
		{"a jailer not owned by root", func(t *testing.T, fx *jailerFixture, r *JailerLaunchRequest) { os.Chown(fx.jailer, 4242, 4243) }, "must be owned by root"},
		{"a jailer in a directory others can write", func(t *testing.T, fx *jailerFixture, r *JailerLaunchRequest) {
			os.Chmod(filepath.Dir(fx.jailer), 0o777)
		}, "writable by nobody else"},
		{"a jailer by another name", func(t *testing.T, fx *jailerFixture, r *JailerLaunchRequest) {
			r.Jailer = filepath.Join(filepath.Dir(fx.jailer), "sh")
			copyFile(t, fx.jailer, r.Jailer, 0o755)
		}, `must contain "jailer"`},
		{"firecracker by another name", func(t *testing.T, fx *jailerFixture, r *JailerLaunchRequest) {
			r.Firecracker = filepath.Join(filepath.Dir(fx.firecracker), "firecracker-v1.16.1")
			copyFile(t, fx.firecracker, r.Firecracker, 0o755)
		}, `must be "firecracker"`},
		{"a relative binary", func(_ *testing.T, _ *jailerFixture, r *JailerLaunchRequest) { r.Jailer = "jailer" }, "not an absolute, clean path"},
		{"a file outside the state dir", func(_ *testing.T, _ *jailerFixture, r *JailerLaunchRequest) { r.Files = []string{"/etc/shadow"} }, "not inside banger's directories"},
		{"a file through a symlink", func(t *testing.T, fx *jailerFixture, r *JailerLaunchRequest) {
			link := filepath.Join(fx.cfg.Layout.StateDir, "vms", "a", "evil")
			mustSymlink(t, "/etc/shadow", link)
			r.Files = []string{link}
		}, "is a symlink"},
		{"a file that is not the owner's", func(t *testing.T, fx *jailerFixture, r *JailerLaunchRequest) { os.Chown(fx.disk, 0, 0) }, "not a regular file of the owner"},
		{"no kernel", func(_ *testing.T, _ *jailerFixture, r *JailerLaunchRequest) { r.Files = nil }, "a kernel at least"},
		{"a dir outside the runtime dir", func(_ *testing.T, _ *jailerFixture, r *JailerLaunchRequest) { r.Dirs = []string{"/etc"} }, "not inside banger's directories"},
		{"an api socket outside the dirs", func(_ *testing.T, fx *jailerFixture, r *JailerLaunchRequest) {
			r.APISocket = filepath.Join(fx.cfg.Layout.RuntimeDir, "fc.sock")
		}, "must lie in one of the dirs"},
		{"a console log that is not the owner's", func(t *testing.T, fx *jailerFixture, r *JailerLaunchRequest) { os.Chown(fx.console, 0, 0) }, "console log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newJailerFixture(t)
			req := fx.request()
			tt.setup(t, fx, &req)
			_, err := fx.s.LaunchJailer(t.Context(), req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
			if api.CodeOf(err) != api.CodeBadRequest {
				t.Errorf("code %s, want bad_request", api.CodeOf(err))
			}
			if _, err := os.Lstat(filepath.Join(fx.cfg.JailBase(), "firecracker", "f1")); err == nil {
				t.Error("a refused launch left a jail")
			}
		})
	}
}

func TestCleanupJailRefuses(t *testing.T) {
	fx := newJailerFixture(t)
	ctx := context.Background()
	for _, id := range []string{"", "../../etc", "a/b", "A"} {
		if err := fx.s.CleanupJail(ctx, id); api.CodeOf(err) != api.CodeBadRequest {
			t.Errorf("CleanupJail(%q) = %v, want bad_request", id, err)
		}
	}
	// A jail with something mounted inside is left alone.
	launched, err := fx.s.LaunchJailer(ctx, fx.request())
	if err != nil {
		t.Fatal(err)
	}
	unix.Kill(launched.PID, unix.SIGKILL)
	mnt := filepath.Join(launched.Root, "mnt")
	os.Mkdir(mnt, 0o755)
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, ""); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	if err := fx.s.CleanupJail(ctx, "f1"); err == nil || !strings.Contains(err.Error(), "has mounts below it") {
		t.Errorf("cleanup of a jail with a mount: %v", err)
	}
	unix.Unmount(mnt, unix.MNT_DETACH)
	if err := fx.s.CleanupJail(ctx, "f1"); err != nil {
		t.Error(err)
	}
}
