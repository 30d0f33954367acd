package golden

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// removedPaths are globs, relative to the root, of what the image does not
// need: per-build secrets and identities, caches, logs, documentation.
func removedPaths() []string {
	return []string{
		// Every VM generates its own (see keygenUnit).
		"etc/ssh/ssh_host_*",
		// banger boots with its own initramfs.
		"boot/initrd.img*", "initrd.img", "initrd.img.old",
		// apt-get clean, and no package lists: they are stale by the time a
		// VM runs; `apt-get update` fetches fresh ones.
		"var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/cache/apt/archives/partial/*",
		"var/lib/apt/lists/*",
		"var/cache/debconf/*-old", "var/lib/dpkg/*-old",
		"var/log/*.log", "var/log/apt/*",
		// Would be shared by every VM.
		"var/lib/systemd/random-seed", "var/lib/systemd/credential.secret",
		"var/lib/dbus/machine-id",
		"tmp/*", "var/tmp/*",
		"usr/share/man/*", "usr/share/info/*", "usr/share/groff/*",
		"usr/share/lintian/*", "usr/share/linda/*",
	}
}

// keptInPrunedDirs are the only files kept in each package's doc directory
// and in the locale directory.
func keptInPrunedDirs() map[string][]string {
	return map[string][]string{
		"usr/share/doc/*":  {"copyright"},
		"usr/share/locale": {"locale.alias"},
	}
}

func (b *builder) configure(ctx context.Context) error {
	v, err := findKernel(b.root)
	if err != nil {
		return err
	}
	b.kernelVersion = v

	for _, f := range rootFiles() {
		if err := writeRootFile(b.root, f); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
	}
	if err := removeGlobs(b.root, removedPaths()); err != nil {
		return err
	}
	if err := pruneDirs(b.root, keptInPrunedDirs()); err != nil {
		return err
	}
	// D-Bus reads this before /etc/machine-id; point it at the per-boot one.
	if fi, err := os.Lstat(filepath.Join(b.root, "var/lib/dbus")); err == nil && fi.IsDir() {
		if err := os.Symlink("/etc/machine-id", filepath.Join(b.root, "var/lib/dbus/machine-id")); err != nil {
			return err
		}
	}

	chroot := func(argv ...string) error {
		return b.run.run(ctx, command{argv: argv, chroot: b.root, dir: "/", env: chrootEnv()})
	}
	// systemctl works offline in a chroot for enable and mask.
	if err := chroot(append([]string{"/usr/bin/systemctl", "enable"}, enabledUnits()...)...); err != nil {
		return err
	}
	if err := chroot(append([]string{"/usr/bin/systemctl", "mask"}, maskedUnits()...)...); err != nil {
		return err
	}
	// Login is by key only; no password works for root.
	if err := chroot("/usr/bin/passwd", "--lock", "root"); err != nil {
		return err
	}

	pkgs := append(append([]string{}, b.spec.Packages...), "linux-image-"+v)
	out, err := b.run.output(ctx, command{
		argv:   append([]string{"/usr/bin/dpkg-query", "-W", "-f=${Package}\t${Version}\n"}, pkgs...),
		chroot: b.root, dir: "/", env: chrootEnv(),
	})
	if err != nil {
		return err
	}
	b.m.Packages = parsePackageVersions(out)

	return moveHome(b.root, b.seed)
}

func parsePackageVersions(out []byte) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if name, ver, ok := strings.Cut(sc.Text(), "\t"); ok && ver != "" {
			m[name] = ver
		}
	}
	return m
}

// pruneDirs empties each directory matching a key of keep, except for the
// names listed for it.
func pruneDirs(root string, keep map[string][]string) error {
	var errs []error
	for pattern, names := range keep {
		dirs, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			return fmt.Errorf("pattern %q: %w", pattern, err)
		}
		for _, dir := range dirs {
			// Package doc directories are often symlinks to a sibling's.
			if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
				continue
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, e := range entries {
				if !contains(names, e.Name()) {
					errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// moveHome moves the image's /root into seed (for the work seed: each VM
// mounts its own work disk at /root) and leaves an empty root-only /root.
// seed gains an .ssh directory ready for authorized_keys and mise activation
// in .bashrc.
func moveHome(root, seed string) error {
	home := filepath.Join(root, "root")
	entries, err := os.ReadDir(home)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(home, e.Name()), filepath.Join(seed, e.Name())); err != nil {
			return err
		}
	}
	for _, d := range []string{home, seed} {
		if err := os.Chmod(d, 0o700); err != nil {
			return err
		}
		// Build runs as root; the unit tests may not.
		if os.Geteuid() == 0 {
			if err := os.Lchown(d, 0, 0); err != nil {
				return err
			}
		}
	}
	ssh := filepath.Join(seed, ".ssh")
	if err := os.Mkdir(ssh, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := os.Chmod(ssh, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(seed, ".bashrc"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(f, bashrcMise); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
