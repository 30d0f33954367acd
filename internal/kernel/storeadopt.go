package kernel

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Adopt takes a kernel directory laid out as an import stages one (an image
// build's kernel/: vmlinuz or vmlinux, optional config, optional
// modules/lib/modules/<version>/) into the store as name. Files are
// hard-linked where the filesystem allows, else copied, so srcDir is left
// as it was and a failure costs nothing; the caller removes srcDir once the
// kernel is recorded where it needs to be.
func (s *Store) Adopt(ctx context.Context, name, srcDir string) (Kernel, error) {
	return s.create(ctx, name, func(ctx context.Context, dest string) (Kernel, error) {
		return install(ctx, dest, func(ctx context.Context, tmp string) (staged, error) {
			return stageAdopt(ctx, srcDir, tmp)
		})
	})
}

func stageAdopt(ctx context.Context, srcDir, tmp string) (staged, error) {
	st := staged{source: srcDir}
	if abs, err := filepath.Abs(srcDir); err == nil {
		st.source = abs
	}
	kernelFile, isELF, err := AdoptableKernel(srcDir)
	if err != nil {
		return st, err
	}
	var imageVersion string
	if isELF {
		dst := filepath.Join(tmp, VmlinuxFile)
		if err := linkOrCopy(ctx, kernelFile, dst); err != nil {
			return st, err
		}
		if imageVersion, err = elfVersion(dst); err != nil {
			return st, err
		}
	} else {
		f, err := os.Open(kernelFile)
		if err != nil {
			return st, err
		}
		fi, err := f.Stat()
		if err == nil {
			_, err = bzImagePayload(f, fi.Size())
		}
		if err == nil {
			imageVersion = bzImageVersion(f)
		}
		f.Close()
		if err != nil {
			return st, fmt.Errorf("%s: %w", kernelFile, err)
		}
		if err := linkOrCopy(ctx, kernelFile, filepath.Join(tmp, VmlinuzFile)); err != nil {
			return st, err
		}
		st.vmlinuz = true
	}
	st.version = imageVersion
	modRoot := filepath.Join(srcDir, ModulesRoot, "lib", "modules")
	entries, err := os.ReadDir(modRoot)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return st, err
	case len(entries) != 1 || !entries[0].IsDir():
		return st, fmt.Errorf("%s: want exactly one kernel version directory", modRoot)
	default:
		mv := entries[0].Name()
		if !validVersion(mv) {
			return st, fmt.Errorf("%s: %q is not a kernel version", modRoot, mv)
		}
		if imageVersion != "" && imageVersion != mv {
			return st, fmt.Errorf("kernel is version %s but its modules are for %s", imageVersion, mv)
		}
		st.version = mv
		if err := linkTree(ctx, filepath.Join(modRoot, mv), treeDir(tmp, mv)); err != nil {
			return st, fmt.Errorf("modules: %w", err)
		}
		st.modules = true
	}
	if st.version == "" {
		return st, fmt.Errorf("cannot tell the kernel version of %s", kernelFile)
	}
	if fi, err := os.Lstat(filepath.Join(srcDir, ConfigFile)); err == nil && fi.Mode().IsRegular() {
		if err := linkOrCopy(ctx, filepath.Join(srcDir, ConfigFile), filepath.Join(tmp, ConfigFile)); err != nil {
			return st, err
		}
		st.config = true
	}
	return st, nil
}

// AdoptableKernel finds the kernel image of a directory Adopt can take:
// its vmlinuz (a bzImage) or, failing that, its vmlinux (ELF).
func AdoptableKernel(dir string) (path string, isELF bool, err error) {
	for _, n := range []string{VmlinuzFile, VmlinuxFile} {
		p := filepath.Join(dir, n)
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			return "", false, err
		}
		var magic [4]byte
		_, rerr := f.ReadAt(magic[:], 0)
		f.Close()
		if rerr != nil {
			return "", false, fmt.Errorf("%s: %w", p, ErrNotKernel)
		}
		return p, string(magic[:]) == elf.ELFMAG, nil
	}
	return "", false, fmt.Errorf("%s has no %s or %s", dir, VmlinuzFile, VmlinuxFile)
}

// VmlinuxDigest is the hex sha256 of the ELF vmlinux that the kernel image
// at path (bzImage or ELF) holds: what Kernel.VmlinuxSHA256 records for it.
func VmlinuxDigest(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if err := ExtractVmlinux(f, fi.Size(), ctxWriter{ctx, h}); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// linkOrCopy hard-links src to dst, copying when the link is refused
// (another filesystem, protected_hardlinks).
func linkOrCopy(ctx context.Context, src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return copyFile(ctx, in, dst, 0o644)
}

// linkTree is copyTree with hard links for the regular files: a modules
// tree is thousands of files that need not be written twice.
func linkTree(ctx context.Context, src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		switch t := d.Type(); {
		case t.IsDir():
			return root.Mkdir(rel, 0o755)
		case t.IsRegular():
			if err := os.Link(p, filepath.Join(dst, rel)); err == nil {
				return nil
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			mode := os.FileMode(0o644)
			if fi, err := f.Stat(); err == nil && fi.Mode()&0o111 != 0 {
				mode = 0o755
			}
			return writeEntry(root, rel, ctxReader{ctx, f}, mode)
		case t&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			skip, err := checkTreeSymlink(filepath.ToSlash(rel), target)
			if err != nil || skip {
				return err
			}
			return root.Symlink(target, rel)
		default:
			return fmt.Errorf("%s: not a regular file, directory or symlink", p)
		}
	})
}
