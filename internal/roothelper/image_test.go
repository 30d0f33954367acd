package roothelper

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/banger/banger/internal/namelock"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/google/go-cmp/cmp"
)

// Every request here is refused before a build could start.
func TestImageBuildRejects(t *testing.T) {
	tests := []struct {
		name, body string
		setup      func(t *testing.T, cfg Config)
		msg        string
	}{
		{name: "unknown image", body: `{"name":"ubuntu-2404"}`, msg: "builds only the debian-bookworm image"},
		{name: "empty name", body: `{}`, msg: "builds only"},
		{name: "traversal", body: `{"name":"../../etc"}`, msg: "builds only"},
		{name: "suffix", body: `{"name":"debian-bookworm/.."}`, msg: "builds only"},
		{name: "unknown field", body: `{"name":"debian-bookworm","dest":"/etc"}`, msg: "unknown field"},
		{name: "images dir is a symlink", body: `{"name":"debian-bookworm"}`, msg: "is a symlink",
			setup: func(t *testing.T, cfg Config) { mustSymlink(t, t.TempDir(), cfg.Layout.ImagesDir()) }},
		{name: "dest is a symlink", body: `{"name":"debian-bookworm"}`, msg: "is a symlink",
			setup: func(t *testing.T, cfg Config) {
				os.Mkdir(cfg.Layout.ImagesDir(), 0o700)
				mustSymlink(t, "/etc", filepath.Join(cfg.Layout.ImagesDir(), "debian-bookworm"))
			}},
		{name: "build dir is a symlink", body: `{"name":"debian-bookworm"}`, msg: "is a symlink",
			setup: func(t *testing.T, cfg Config) { mustSymlink(t, "/", filepath.Join(cfg.Layout.CacheDir, buildSubdir)) }},
		{name: "apt cache is a symlink", body: `{"name":"debian-bookworm"}`, msg: "is a symlink",
			setup: func(t *testing.T, cfg Config) { mustSymlink(t, "/var", filepath.Join(cfg.Layout.CacheDir, aptSubdir)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			if tt.setup != nil {
				tt.setup(t, cfg)
			}
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			req := httptest.NewRequest("POST", RouteImageBuild, strings.NewReader(tt.body))
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != 400 {
				t.Errorf("status %d, want 400 (body %s)", rec.Code, rec.Body)
			}
			var e api.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if e.Code != api.CodeBadRequest || !strings.Contains(e.Message, tt.msg) {
				t.Errorf("got %s %q, want bad_request containing %q", e.Code, e.Message, tt.msg)
			}
			// Nothing was created on the way.
			if _, err := os.Lstat(filepath.Join(cfg.Layout.CacheDir, buildSubdir, "images.lock")); err == nil {
				t.Error("a refused request took the build lock")
			}
		})
	}
	t.Run("get", func(t *testing.T) {
		s, _ := New(testConfig(t))
		defer s.Close()
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", RouteImageBuild, nil))
		if rec.Code != 405 {
			t.Errorf("GET: status %d", rec.Code)
		}
	})
}

// A request that waited for another build finds the image there and hands
// it to the owner without building.
func TestBuildImageAfterWait(t *testing.T) {
	prereq(t, os.Geteuid() == 0, "needs root to chown to the owner")
	cfg := testConfig(t)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	build := filepath.Join(cfg.Layout.CacheDir, buildSubdir)
	if err := os.MkdirAll(build, 0o711); err != nil {
		t.Fatal(err)
	}
	unlock, err := namelock.LockFile(t.Context(), filepath.Join(build, "images.lock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []string
	type answer struct {
		res ImageBuildResult
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := s.BuildImage(t.Context(), "debian-bookworm", func(stage, msg string) {
			mu.Lock()
			events = append(events, stage+": "+msg)
			mu.Unlock()
		})
		done <- answer{res, err}
	}()
	// The "other build" finishes: its output appears, then the lock goes.
	time.Sleep(400 * time.Millisecond)
	dest := filepath.Join(cfg.Layout.ImagesDir(), "debian-bookworm")
	if err := os.MkdirAll(filepath.Join(dest, "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dest, "rootfs.ext4"), []byte("fs"), 0o644)
	unlock()
	var a answer
	select {
	case a = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("BuildImage did not return after the lock was released")
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
	if diff := cmp.Diff(ImageBuildResult{Name: "debian-bookworm", Dir: dest}, a.res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	mu.Lock()
	if diff := cmp.Diff([]string{"build image: waiting for another image build to finish"}, events); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	mu.Unlock()
	for _, p := range []string{dest, filepath.Join(dest, "kernel"), filepath.Join(dest, "rootfs.ext4"), cfg.Layout.ImagesDir()} {
		if uid, gid := owner(t, p); uid != 4242 || gid != 4243 {
			t.Errorf("%s owned by %d:%d, want 4242:4243", p, uid, gid)
		}
	}
	for _, p := range []string{build, filepath.Join(cfg.Layout.CacheDir, aptSubdir)} {
		if uid, _ := owner(t, p); uid != 0 {
			t.Errorf("%s owned by %d, want root", p, uid)
		}
	}
}

func owner(t *testing.T, p string) (uint32, uint32) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

func TestBuildImageNeedsStateDir(t *testing.T) {
	cfg := testConfig(t)
	os.RemoveAll(cfg.Layout.StateDir)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.BuildImage(t.Context(), "debian-bookworm", nil)
	if !errors.Is(err, api.ErrUnavailable) || !strings.Contains(api.HintOf(err), "start bangerd") {
		t.Fatalf("error %v (hint %q)", err, api.HintOf(err))
	}
	if _, err := os.Lstat(cfg.Layout.StateDir); err == nil {
		t.Error("the helper created the owner's state dir")
	}
}

// chownTree hands over what root owns inside the tree and nothing else.
func TestChownTree(t *testing.T) {
	prereq(t, os.Geteuid() == 0, "needs root to chown")
	base := t.TempDir()
	tree := filepath.Join(base, "img")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(tree, "kernel", "modules"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string) string {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rootfs := write(filepath.Join(tree, "rootfs.ext4"))
	ko := write(filepath.Join(tree, "kernel", "modules", "virtio.ko"))
	secret := write(filepath.Join(outside, "secret"))
	linked := write(filepath.Join(outside, "linked"))
	if err := os.Link(linked, filepath.Join(tree, "hardlink")); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, secret, filepath.Join(tree, "link-to-secret"))
	mustSymlink(t, outside, filepath.Join(tree, "kernel", "dir-link"))
	other := write(filepath.Join(tree, "someone-elses"))
	os.Lchown(other, 1234, 1234)

	if err := chownTree(tree, 4242, 4243); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path string
		uid  uint32
	}{
		{tree, 4242},
		{rootfs, 4242},
		{ko, 4242},
		{filepath.Join(tree, "link-to-secret"), 4242}, // the link itself
		{secret, 0},
		{outside, 0},
		{linked, 0}, // hard-linked: left alone
		{other, 1234},
	} {
		if uid, _ := owner(t, tt.path); uid != tt.uid {
			t.Errorf("%s owned by %d, want %d", tt.path, uid, tt.uid)
		}
	}
	if err := chownTree(filepath.Join(tree, "link-to-secret"), 4242, 4243); err == nil {
		t.Error("chownTree through a symlink to a file succeeded")
	}
	if err := chownTree(filepath.Join(tree, "kernel", "dir-link"), 4242, 4243); err == nil || !strings.Contains(err.Error(), "changed") {
		t.Errorf("chownTree of a symlink to a directory: %v", err)
	}
	if uid, _ := owner(t, outside); uid != 0 {
		t.Error("chownTree followed a symlink")
	}
}

func TestLockFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	unlock, err := namelock.LockFile(t.Context(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	waited := 0
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := namelock.LockFile(ctx, p, func() { waited++ }); !errors.Is(err, context.DeadlineExceeded) || waited != 1 {
		t.Errorf("second lock: %v, waited %d times", err, waited)
	}
	unlock()
	unlock2, err := namelock.LockFile(t.Context(), p, nil)
	if err != nil {
		t.Fatal(err)
	}
	unlock2()
}

func TestOneLine(t *testing.T) {
	err := errors.New("build image \"debian-bookworm\": debootstrap: run [\"/usr/sbin/debootstrap\"]: exit status 1\nI: Retrieving InRelease\nE: Failed getting release file\nW: see the log\n\nE: gave up")
	want := "build image \"debian-bookworm\": debootstrap: run [\"/usr/sbin/debootstrap\"]: exit status 1: E: Failed getting release file | W: see the log | E: gave up"
	// Blank lines count in the tail: keep whatever the last three are.
	got := oneLine(err).Error()
	if !strings.HasPrefix(got, "build image \"debian-bookworm\": debootstrap: run") || strings.Contains(got, "\n") || !strings.HasSuffix(got, "E: gave up") {
		t.Errorf("oneLine = %q, want one line like %q", got, want)
	}
	if got := oneLine(errors.New("plain")).Error(); got != "plain" {
		t.Errorf("oneLine(plain) = %q", got)
	}
}
