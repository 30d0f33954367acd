package golden

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBuildRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := DefaultSpec()
	bad.Packages = append(bad.Packages, "--no-check-gpg")
	if _, err := Build(t.Context(), bad, filepath.Join(dir, "img"), Options{WorkDir: dir}); err == nil ||
		!strings.HasPrefix(err.Error(), `build image "debian-bookworm": `) {
		t.Errorf("bad spec: %v", err)
	}
	if _, err := Build(t.Context(), DefaultSpec(), "relative", Options{WorkDir: dir}); err == nil {
		t.Error("relative dest accepted")
	}
	if _, err := Build(t.Context(), DefaultSpec(), dir, Options{WorkDir: dir}); !errors.Is(err, fs.ErrExist) {
		t.Errorf("existing dest: %v, want ErrExist", err)
	}
}

// requireFakeBuild sets up a Build that runs as far as the fake debootstrap.
func requireFakeBuild(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("Build refuses to run unprivileged before it reaches debootstrap")
	}
	installFakeDebootstrap(t)
	if err := Preflight(); err != nil {
		t.Skipf("host lacks the other build tools: %v", err)
	}
}

// A failing debootstrap leaves no work dir, no staging dir and no dest, and
// its error carries debootstrap's own log.
func TestBuildFailureCleansUp(t *testing.T) {
	requireFakeBuild(t)
	base := t.TempDir()
	t.Setenv("GOLDEN_FAKE_LOG", filepath.Join(base, "calls"))
	opts := Options{WorkDir: filepath.Join(base, "work"), AptCacheDir: filepath.Join(base, "debs")}
	var progress []string
	opts.Progress = func(stage, msg string) { progress = append(progress, stage+": "+msg) }
	dest := filepath.Join(base, "images", "debian-bookworm")

	// Leftovers of a build that died: swept by the next one.
	mustWrite(t, filepath.Join(opts.WorkDir, "build-dead", "root", "etc", "hostname"), "x")
	mustWrite(t, dest+".tmp-dead/rootfs.ext4", "x")

	_, err := Build(t.Context(), DefaultSpec(), dest, opts)
	if err == nil {
		t.Fatal("Build succeeded with a failing debootstrap")
	}
	for _, want := range []string{`build image "debian-bookworm": debootstrap: run`, "--force-check-gpg",
		"E: Failed getting release file", "unable to resolve host address"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	calls, _ := os.ReadFile(filepath.Join(base, "calls"))
	for _, want := range []string{"--variant=minbase", "--keyring=" + Keyring, "--cache-dir=" + opts.AptCacheDir,
		"--include=systemd,", ",linux-image-cloud-amd64 ", " bookworm " + opts.WorkDir} {
		if !strings.Contains(string(calls), want) {
			t.Errorf("debootstrap argv lacks %q: %s", want, calls)
		}
	}
	if strings.Join(progress, "\n") != "debootstrap: \ndebootstrap: Retrieving InRelease" {
		t.Errorf("progress = %q", progress)
	}
	assertNothingLeft(t, opts.WorkDir, dest)
}

func TestBuildCancelKillsDebootstrap(t *testing.T) {
	requireFakeBuild(t)
	t.Setenv("GOLDEN_FAKE_DEBOOTSTRAP", "hang")
	base := t.TempDir()
	opts := Options{WorkDir: filepath.Join(base, "work")}
	dest := filepath.Join(base, "img")
	ctx, cancel := context.WithCancel(t.Context())
	opts.Progress = func(stage, msg string) {
		if msg != "" { // debootstrap is running
			cancel()
		}
	}
	start := time.Now()
	_, err := Build(ctx, DefaultSpec(), dest, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("cancel took %s", d)
	}
	assertNothingLeft(t, opts.WorkDir, dest)
}

func assertNothingLeft(t *testing.T, workDir, dest string) {
	t.Helper()
	entries, _ := os.ReadDir(workDir)
	for _, e := range entries {
		if e.Name() != ".lock" {
			t.Errorf("left in the work dir: %s", e.Name())
		}
	}
	if left, _ := filepath.Glob(dest + "*"); len(left) > 0 {
		t.Errorf("left beside dest: %v", left)
	}
}
