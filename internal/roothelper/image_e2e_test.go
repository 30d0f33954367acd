package roothelper

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/image"
	"github.com/banger/banger/internal/kernel"
)

// helperBuilder is the daemon's Builder, over a real helper socket.
type helperBuilder struct{ c *Client }

func (b helperBuilder) BuildGolden(ctx context.Context, name string, progress func(api.Event)) error {
	_, err := b.c.BuildImage(ctx, name, progress)
	return err
}

// TestImageBuildReal builds debian-bookworm through the helper's route, as
// the daemon does, then registers it with the image and kernel stores. It
// needs root, debootstrap and the Debian archive; BANGER_TEST_GOLDEN_CACHE
// names the cache dir (its apt/ and mise/ keep the downloads, so a rerun
// spends minutes, not tens of them, and leaves the archive alone).
func TestImageBuildReal(t *testing.T) {
	if os.Getenv("BANGER_E2E") != "1" {
		t.Skip("real image build through the helper: set BANGER_E2E=1 (needs root, debootstrap, the Debian archive) and BANGER_TEST_GOLDEN_CACHE")
	}
	prereq(t, os.Geteuid() == 0, "the image build needs root")
	cache := os.Getenv("BANGER_TEST_GOLDEN_CACHE")
	if cache == "" {
		// A fixed place, so a rerun on the same machine reuses downloads.
		cache = "/var/tmp/banger-test-golden-cache"
	}
	if !filepath.IsAbs(cache) || filepath.Clean(cache) != cache {
		t.Fatalf("BANGER_TEST_GOLDEN_CACHE=%q: want a clean absolute path", cache)
	}
	// Large: not under the default TMPDIR, which may be a small tmpfs.
	base, err := os.MkdirTemp("/var/tmp", "banger-helper-image-")
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("BANGER_TEST_KEEP") == "1" {
		t.Logf("keeping %s", base)
	} else {
		t.Cleanup(func() { os.RemoveAll(base) })
	}
	// The owner must reach its state dir.
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	const ownerUID, ownerGID = 65534, 65534 // nobody: a uid that owns nothing else
	cfg := testConfig(t)
	cfg.OwnerUID, cfg.OwnerGID = ownerUID, ownerGID
	cfg.Layout.StateDir = filepath.Join(base, "state")
	cfg.Layout.CacheDir = cache
	for _, d := range []string{cfg.Layout.StateDir, cache} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Lchown(cfg.Layout.StateDir, ownerUID, ownerGID); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Minute)
	defer cancel()
	go s.Serve(ctx, ln, time.Second)
	c := NewClient(cfg.Layout.HelperSocket())

	start := time.Now()
	var stages []string
	res, err := c.BuildImage(ctx, "debian-bookworm", func(ev api.Event) {
		if ev.Message == "" {
			stages = append(stages, ev.Stage)
			t.Logf("%6.1fs stage %s", time.Since(start).Seconds(), ev.Stage)
		}
	})
	if err != nil {
		t.Fatalf("build: %v (hint: %s)", err, api.HintOf(err))
	}
	t.Logf("built in %s: %+v, stages %v", time.Since(start).Round(time.Second), res, stages)
	if !res.Built || res.Dir != filepath.Join(cfg.Layout.ImagesDir(), "debian-bookworm") {
		t.Errorf("result %+v", res)
	}

	// Everything the build wrote is the owner's, and the owner can read it.
	err = filepath.WalkDir(res.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != ownerUID || st.Gid != ownerGID {
			t.Errorf("%s is owned by %d:%d", p, st.Uid, st.Gid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"rootfs.ext4", "work-seed.ext4", "manifest.json", "kernel/vmlinuz"} {
		cmd := exec.Command("head", "-c", "4096", filepath.Join(res.Dir, f))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: ownerUID, Gid: ownerGID}}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("the owner cannot read %s: %v: %s", f, err, out)
		}
	}
	if uid, _ := owner(t, res.Log); uid != ownerUID {
		t.Errorf("build log %s owned by %d", res.Log, uid)
	}

	// Asked again (a lost answer): no build, the same image.
	again, err := c.BuildImage(ctx, "debian-bookworm", nil)
	if err != nil || again.Built {
		t.Errorf("second request: %+v, %v", again, err)
	}

	// The daemon's side: register the build with the stores.
	ks, err := kernel.NewStore(kernel.StoreConfig{Dir: cfg.Layout.KernelsDir()})
	if err != nil {
		t.Fatal(err)
	}
	is, err := image.NewStore(image.StoreConfig{Dir: cfg.Layout.ImagesDir(), Kernels: ks, Builder: helperBuilder{c}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := is.Ensure(ctx, "debian-bookworm", nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ks.Get(ctx, img.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image %s: rootfs %d MiB, work seed %d MiB, kernel %s %s (vmlinux %d MiB, modules %d MiB)",
		img.Name, img.SizeBytes>>20, img.WorkSeedBytes>>20, k.Name, k.Version, k.VmlinuxSize>>20, k.ModulesSize>>20)
	if img.Kernel != image.DefaultKernelName || !k.HasModules || !k.HasConfig || k.VmlinuzSize == 0 {
		t.Errorf("image %+v, kernel %+v", img, k)
	}
	if _, err := os.Lstat(filepath.Join(res.Dir, "kernel")); err == nil {
		t.Error("the build's kernel/ copy is still in the image")
	}
	if _, err := os.Stat(filepath.Join(res.Dir, image.RecordFile)); err != nil {
		t.Error(err)
	}
}
