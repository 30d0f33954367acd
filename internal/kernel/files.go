package kernel

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ImportFiles imports a kernel from files into dest, which must not exist.
// kernelPath is a bzImage (vmlinuz) or an ELF vmlinux; modulesDir is its
// lib/modules/<version> directory, or "" for a kernel with everything built
// in. The version is the modules directory's name and must match the one in
// the kernel image. The build configuration comes from the kernel itself
// (CONFIG_IKCONFIG), else from config-<version> or .config beside
// kernelPath (the /boot and build-tree layouts); without one,
// MMIOCmdlineDevices reads false.
func ImportFiles(ctx context.Context, kernelPath, modulesDir, dest string) (Kernel, error) {
	k, err := install(ctx, dest, func(ctx context.Context, tmp string) (staged, error) {
		return stageFiles(ctx, kernelPath, modulesDir, tmp)
	})
	if err != nil {
		return Kernel{}, fmt.Errorf("import kernel %s: %w", kernelPath, err)
	}
	return k, nil
}

func stageFiles(ctx context.Context, kernelPath, modulesDir, tmp string) (staged, error) {
	st := staged{source: kernelPath}
	if abs, err := filepath.Abs(kernelPath); err == nil {
		st.source = abs
	}
	in, err := os.Open(kernelPath)
	if err != nil {
		return st, err
	}
	defer in.Close()
	var magic [4]byte
	if _, err := in.ReadAt(magic[:], 0); err != nil {
		return st, fmt.Errorf("%w: %v", ErrNotKernel, err)
	}
	var imageVersion string
	if string(magic[:]) == elf.ELFMAG {
		dst := filepath.Join(tmp, VmlinuxFile)
		if err := copyFile(ctx, in, dst, 0o644); err != nil {
			return st, err
		}
		if imageVersion, err = elfVersion(dst); err != nil {
			return st, err
		}
	} else {
		fi, err := in.Stat()
		if err != nil {
			return st, err
		}
		if _, err := bzImagePayload(in, fi.Size()); err != nil {
			return st, err
		}
		imageVersion = bzImageVersion(in)
		if err := copyFile(ctx, in, filepath.Join(tmp, VmlinuzFile), 0o644); err != nil {
			return st, err
		}
		st.vmlinuz = true
	}
	st.version = imageVersion
	if modulesDir != "" {
		mv := filepath.Base(filepath.Clean(modulesDir))
		if !validVersion(mv) {
			return st, fmt.Errorf("modules directory %s is not named by a kernel version", modulesDir)
		}
		if imageVersion != "" && imageVersion != mv {
			return st, fmt.Errorf("kernel is version %s but modules directory is for %s", imageVersion, mv)
		}
		st.version = mv
		if err := copyTree(ctx, modulesDir, treeDir(tmp, mv)); err != nil {
			return st, fmt.Errorf("copy modules: %w", err)
		}
		st.modules = true
	}
	if st.version == "" {
		return st, fmt.Errorf("cannot tell the kernel version of %s; give its modules directory", kernelPath)
	}
	dir := filepath.Dir(kernelPath)
	for _, name := range []string{"config-" + st.version, ".config"} {
		src, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		err = copyFile(ctx, src, filepath.Join(tmp, ConfigFile), 0o644)
		src.Close()
		if err != nil {
			return st, err
		}
		st.config = true
		break
	}
	return st, nil
}

func copyFile(ctx context.Context, src io.ReaderAt, dst string, mode os.FileMode) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, ctxReader{ctx, io.NewSectionReader(src, 0, 1<<62)})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}

// copyTree copies a modules tree: directories, regular files and symlinks
// that stay inside it (the headers' "build" and "source" links are
// skipped). Anything else is refused.
func copyTree(ctx context.Context, src, dst string) error {
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
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		switch t := d.Type(); {
		case t.IsDir():
			return root.Mkdir(rel, 0o755)
		case t.IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if fi.Mode()&0o111 != 0 {
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
