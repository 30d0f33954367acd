package golden

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Options are the host-side settings of a build.
type Options struct {
	// WorkDir holds scratch space (a few GiB), e.g. under banger's cache
	// dir. Each build uses its own subdirectory and removes it; builds
	// sharing a WorkDir run one at a time.
	WorkDir string
	// AptCacheDir keeps downloaded .debs for the next build (debootstrap
	// verifies each against the signed package index before use). Optional.
	AptCacheDir string
	// MiseCacheDir keeps the verified mise tarball for the next build.
	// Optional.
	MiseCacheDir string
	// Progress is called with an empty msg as each stage starts, then with
	// debootstrap's per-package steps ("Retrieving git 1:2.39.5-0+deb12u3").
	// Calls come one at a time, possibly from another goroutine. Optional.
	Progress func(stage, msg string)
	// Log receives the full output of every tool. Optional.
	Log io.Writer
}

// Stages, in the order Build reports them.
const (
	StageDebootstrap = "debootstrap"
	StageInstall     = "install packages"
	StageConfigure   = "configure"
	StageMise        = "mise"
	StageRootfs      = "mkfs rootfs"
	StageWorkSeed    = "work seed"
	StageKernel      = "kernel"
)

// Build makes the image spec describes in the directory dest, which must not
// exist. The outputs are staged beside dest and renamed into place at the
// end, so dest is either absent or complete. Build needs root.
func Build(ctx context.Context, spec Spec, dest string, opts Options) (Manifest, error) {
	m, err := build(ctx, spec, dest, opts)
	if err != nil {
		return Manifest{}, fmt.Errorf("build image %q: %w", spec.Name, err)
	}
	return m, nil
}

func build(ctx context.Context, spec Spec, dest string, opts Options) (_ Manifest, err error) {
	start := time.Now()
	if err := spec.validate(); err != nil {
		return Manifest{}, err
	}
	if !filepath.IsAbs(dest) || !filepath.IsAbs(opts.WorkDir) {
		return Manifest{}, fmt.Errorf("destination %q and work dir %q must be absolute paths", dest, opts.WorkDir)
	}
	for _, d := range []string{opts.AptCacheDir, opts.MiseCacheDir} {
		if d != "" && !filepath.IsAbs(d) {
			return Manifest{}, fmt.Errorf("cache dir %q must be an absolute path", d)
		}
	}
	dest = filepath.Clean(dest)
	if _, err := os.Lstat(dest); err == nil {
		return Manifest{}, fmt.Errorf("%s: %w", dest, fs.ErrExist)
	}
	if os.Geteuid() != 0 {
		return Manifest{}, errors.New("debootstrap and mkfs ownership need root (run it in bangerd-root)")
	}
	tl, err := findTools()
	if err != nil {
		return Manifest{}, err
	}

	b := &builder{
		spec:     spec,
		opts:     opts,
		tools:    tl,
		run:      runner{log: opts.Log},
		progress: opts.Progress,
	}
	if b.progress == nil {
		b.progress = func(string, string) {}
	}

	for _, d := range []string{opts.WorkDir, filepath.Dir(dest), opts.AptCacheDir, opts.MiseCacheDir} {
		if d == "" {
			continue
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return Manifest{}, err
		}
	}
	unlock, err := lockDir(ctx, opts.WorkDir, func() {
		b.progress(StageDebootstrap, "waiting for another image build to finish")
	})
	if err != nil {
		return Manifest{}, err
	}
	defer unlock()
	b.sweep(dest)

	// mountinfo lists resolved paths; the cleanup must see the same ones.
	workDir, err := filepath.EvalSymlinks(opts.WorkDir)
	if err != nil {
		return Manifest{}, err
	}
	work, err := os.MkdirTemp(workDir, "build-")
	if err != nil {
		return Manifest{}, err
	}
	defer func() { err = errors.Join(err, removeTree(work, procMountinfo, detach)) }()
	b.root = filepath.Join(work, "root")
	b.seed = filepath.Join(work, "seed")
	b.scratch = filepath.Join(work, "scratch")
	for _, d := range []string{b.root, b.seed, b.scratch} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return Manifest{}, err
		}
	}
	// The image's / (work is 0700, so nothing below it is reachable by others).
	if err := os.Chmod(b.root, 0o755); err != nil {
		return Manifest{}, err
	}

	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	b.out = dest + ".tmp-" + hex.EncodeToString(suffix)
	if err := os.Mkdir(b.out, 0o755); err != nil {
		return Manifest{}, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, os.RemoveAll(b.out))
		}
	}()

	steps := []struct {
		stage string
		do    func(context.Context) error
	}{
		{StageDebootstrap, b.debootstrap},
		{StageInstall, b.install},
		{StageConfigure, b.configure},
		{StageMise, b.mise},
		{StageRootfs, b.mkfsRootfs},
		{StageWorkSeed, b.workSeed},
		{StageKernel, b.kernel},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return Manifest{}, err
		}
		t := time.Now()
		b.progress(s.stage, "")
		if err := s.do(ctx); err != nil {
			return Manifest{}, fmt.Errorf("%s: %w", s.stage, err)
		}
		b.m.Stages = append(b.m.Stages, StageTime{s.stage, seconds(time.Since(t))})
	}

	b.m.Name = spec.Name
	b.m.Suite = spec.Suite
	b.m.SpecDigest = spec.Digest()
	b.m.Created = time.Now().UTC().Truncate(time.Second)
	b.m.BuildSeconds = seconds(time.Since(start))
	if err := writeManifest(b.out, b.m); err != nil {
		return Manifest{}, err
	}
	// Clean up before publishing: once dest exists the build has succeeded.
	if err := removeTree(work, procMountinfo, detach); err != nil {
		return Manifest{}, err
	}
	if err := os.Rename(b.out, dest); err != nil {
		return Manifest{}, err
	}
	if err := b.pruneAptCache(); err != nil {
		// The image is complete; a cache that keeps a few stale .debs is not
		// worth failing it for.
		fmt.Fprintf(b.logw(), "golden: prune %s: %v\n", opts.AptCacheDir, err)
	}
	return b.m, nil
}

func seconds(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

// builder carries one build's state between stages.
type builder struct {
	spec     Spec
	opts     Options
	tools    tools
	run      runner
	progress func(stage, msg string)

	root    string // the image's root tree
	seed    string // the image's /root, moved out for the work seed
	scratch string
	out     string // dest.tmp-*

	kernelVersion string
	debs          map[string]bool // .deb file names this build used
	m             Manifest
}

func (b *builder) logw() io.Writer {
	if b.opts.Log == nil {
		return io.Discard
	}
	return b.opts.Log
}

// sweep removes what a build that died (helper killed, host rebooted) left:
// its work directory, with any mounts, and its half-written destination.
// The WorkDir lock is held, so none of it belongs to a live build.
func (b *builder) sweep(dest string) {
	var stale []string
	if entries, err := os.ReadDir(b.opts.WorkDir); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "build-") {
				stale = append(stale, filepath.Join(b.opts.WorkDir, e.Name()))
			}
		}
	}
	if m, err := filepath.Glob(dest + ".tmp-*"); err == nil {
		stale = append(stale, m...)
	}
	for _, d := range stale {
		if resolved, err := filepath.EvalSymlinks(d); err == nil {
			d = resolved
		}
		if err := removeTree(d, procMountinfo, detach); err != nil {
			// Not fatal: this build works in a fresh directory.
			fmt.Fprintf(b.logw(), "golden: remove stale %s: %v\n", d, err)
		}
	}
}

// debootstrap runs the first stage: download, verify against the archive
// keyring, unpack. --foreign splits off the configuration (second stage),
// which gives a progress step of its own and a point to drop configuration
// in before dpkg runs.
func (b *builder) debootstrap(ctx context.Context) error {
	argv := []string{b.tools.debootstrap,
		"--variant=minbase",
		"--components=main",
		"--include=" + strings.Join(b.spec.Packages, ","),
		"--keyring=" + Keyring,
		"--force-check-gpg",
		"--foreign",
	}
	if b.opts.AptCacheDir != "" {
		argv = append(argv, "--cache-dir="+b.opts.AptCacheDir)
	}
	// No mirror argument: debootstrap's default.
	argv = append(argv, b.spec.Suite, b.root)
	if err := b.run.run(ctx, command{argv: argv, env: hostEnv(), onLine: b.relay(StageDebootstrap)}); err != nil {
		return b.withDebootstrapLog(err)
	}
	debs, err := readDebPaths(filepath.Join(b.root, "debootstrap", "debpaths"))
	if err != nil {
		return err
	}
	b.debs = debs
	return nil
}

// install runs debootstrap's second stage inside the root: dpkg unpacks and
// configures every package.
func (b *builder) install(ctx context.Context) error {
	// In place before dpkg runs, so docs are never unpacked.
	if err := writeRootFile(b.root, file{"/etc/dpkg/dpkg.cfg.d/banger-nodoc", 0o644, dpkgExcludes}); err != nil {
		return err
	}
	err := b.run.run(ctx, command{
		argv:   []string{"/debootstrap/debootstrap", "--second-stage"},
		chroot: b.root,
		dir:    "/",
		env:    chrootEnv(),
		onLine: b.relay(StageInstall),
	})
	// debootstrap unmounts /proc and /sys itself unless it was killed.
	err = errors.Join(err, unmountAll(b.root, procMountinfo, detach))
	if err != nil {
		return b.withDebootstrapLog(err)
	}
	// dpkg's output went to debootstrap's log, which configure deletes.
	if data, err := os.ReadFile(filepath.Join(b.root, "var/log/bootstrap.log")); err == nil {
		_, _ = b.logw().Write(data)
	}
	return nil
}

// relay turns debootstrap's "I: Retrieving foo" lines into progress messages.
func (b *builder) relay(stage string) func(string) {
	return func(line string) {
		if msg, ok := strings.CutPrefix(line, "I: "); ok {
			b.progress(stage, msg)
		}
	}
}

// withDebootstrapLog adds the end of debootstrap's own log, which has the
// real cause and is removed with the work dir.
func (b *builder) withDebootstrapLog(err error) error {
	for _, p := range []string{"debootstrap/debootstrap.log", "var/log/bootstrap.log"} {
		data, rerr := os.ReadFile(filepath.Join(b.root, p))
		if rerr != nil {
			continue
		}
		_, _ = b.logw().Write(data)
		tail := &tailBuffer{max: tailSize}
		_, _ = tail.Write(data)
		return fmt.Errorf("%w\ndebootstrap.log:\n%s", err, strings.TrimSpace(tail.String()))
	}
	return err
}

// readDebPaths reads the packages debootstrap fetched ("name path" lines)
// as cache file names.
func readDebPaths(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	debs := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 {
			debs[filepath.Base(f[1])] = true
		}
	}
	return debs, sc.Err()
}

// pruneAptCache drops .debs this build did not use (superseded versions), so
// the cache does not grow with every Debian point release.
func (b *builder) pruneAptCache() error {
	if b.opts.AptCacheDir == "" || len(b.debs) == 0 {
		return nil
	}
	entries, err := os.ReadDir(b.opts.AptCacheDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".deb") && !b.debs[e.Name()] {
			errs = append(errs, os.Remove(filepath.Join(b.opts.AptCacheDir, e.Name())))
		}
	}
	return errors.Join(errs...)
}

func (b *builder) mise(ctx context.Context) error {
	pin := b.spec.Mise
	b.progress(StageMise, "fetching "+pin.Package+"@"+pin.Version)
	tgz, err := miseFetcher{
		run:      b.run,
		npm:      b.tools.npm,
		scratch:  b.scratch,
		cacheDir: b.opts.MiseCacheDir,
	}.fetch(ctx, pin)
	if err != nil {
		return err
	}
	dst, err := inRoot(b.root, "/usr/local/bin/mise")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := extractMise(tgz, dst); err != nil {
		return err
	}
	bin, _, err := fileSums(dst)
	if err != nil {
		return err
	}
	b.m.Mise = MiseInfo{Version: pin.Version, TarballSHA256: pin.SHA256, BinarySHA256: bin}
	return nil
}

func (b *builder) mkfsRootfs(ctx context.Context) error {
	u, err := diskUsage(b.root)
	if err != nil {
		return err
	}
	img := filepath.Join(b.out, RootfsFile)
	// Read-only and shared by every VM (an overlay takes the writes), so no
	// journal and no reserved blocks.
	p := ext4Params{label: "banger-root", size: rootfsSize(u.Bytes), inodes: rootfsInodes(u.Inodes)}
	b.progress(StageRootfs, fmt.Sprintf("%d MiB of files into a %d MiB image", u.Bytes/mib, p.size/mib))
	if err := makeExt4(ctx, b.run, b.tools.mkfs, b.root, img, p); err != nil {
		return err
	}
	used, err := fsUsed(ctx, b.run, b.tools.dumpe2fs, img)
	if err != nil {
		return err
	}
	b.m.Sizes.Content, b.m.Sizes.Rootfs, b.m.Sizes.RootfsUsed = u.Bytes, p.size, used
	return nil
}

func (b *builder) workSeed(ctx context.Context) error {
	u, err := diskUsage(b.seed)
	if err != nil {
		return err
	}
	img := filepath.Join(b.out, WorkSeedFile)
	// Copied per VM and written to: keep the journal.
	p := ext4Params{label: "banger-work", size: seedSize(u.Bytes), journal: true}
	if err := makeExt4(ctx, b.run, b.tools.mkfs, b.seed, img, p); err != nil {
		return err
	}
	// mkfs -d (1.47.0) gives the root directory mode 0755 whatever the
	// source's; /root is 0700 on Debian.
	if err := b.run.run(ctx, command{argv: []string{b.tools.debugfs, "-w", "-R", "sif / mode 040700", img}}); err != nil {
		return err
	}
	used, err := fsUsed(ctx, b.run, b.tools.dumpe2fs, img)
	if err != nil {
		return err
	}
	b.m.Sizes.WorkSeed, b.m.Sizes.WorkSeedUsed = p.size, used
	return nil
}

// kernel copies the cloud kernel, its config and modules out of the root
// (they stay in the image too, for modprobe in the guest).
func (b *builder) kernel(ctx context.Context) error {
	v := b.kernelVersion
	dir := filepath.Join(b.out, KernelDir)
	modDst := filepath.Join(dir, KernelModules, "lib", "modules", v)
	if err := os.MkdirAll(filepath.Dir(modDst), 0o755); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(b.root, "boot", "vmlinuz-"+v), filepath.Join(dir, KernelImage), 0o644); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(b.root, "boot", "config-"+v), filepath.Join(dir, KernelConfig), 0o644); err != nil {
		return err
	}
	src, err := modulesDir(b.root, v)
	if err != nil {
		return err
	}
	if err := copyTree(src, modDst); err != nil {
		return err
	}
	u, err := diskUsage(dir)
	if err != nil {
		return err
	}
	b.m.Kernel = v
	b.m.Sizes.KernelAndModules = u.Bytes
	return nil
}

// modulesDir finds /lib/modules/<v> without following the image's /lib
// symlink (merged /usr) from outside the root.
func modulesDir(root, version string) (string, error) {
	for _, d := range []string{"usr/lib/modules", "lib/modules"} {
		p := filepath.Join(root, d, version)
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("no modules for kernel %s in the image", version)
}

// findKernel returns the version of the one kernel in /boot.
func findKernel(root string) (string, error) {
	matches, err := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil {
		return "", err
	}
	sort.Strings(matches)
	if len(matches) != 1 {
		return "", fmt.Errorf("want exactly one kernel in /boot, found %d %q", len(matches), matches)
	}
	return strings.TrimPrefix(filepath.Base(matches[0]), "vmlinuz-"), nil
}
