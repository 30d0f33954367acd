package kernel

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// ImportDeb imports a Debian kernel package (linux-image-*.deb) into dest,
// which must not exist: boot/vmlinuz-<version>, boot/config-<version> and
// lib/modules/<version>/ (or usr/lib/modules/) are taken from the package's
// data archive, the rest is ignored. Entries that could write or point
// outside the kernel directory (absolute or ".." names, absolute or
// escaping symlinks) and device nodes are refused; the "build" and "source"
// symlinks to kernel headers are skipped.
func ImportDeb(ctx context.Context, debPath, dest string) (Kernel, error) {
	k, err := install(ctx, dest, func(ctx context.Context, tmp string) (staged, error) {
		return stageDeb(ctx, debPath, tmp)
	})
	if err != nil {
		return Kernel{}, fmt.Errorf("import kernel %s: %w", debPath, err)
	}
	return k, nil
}

func stageDeb(ctx context.Context, debPath, tmp string) (staged, error) {
	st := staged{source: debPath}
	if abs, err := filepath.Abs(debPath); err == nil {
		st.source = abs
	}
	f, err := os.Open(debPath)
	if err != nil {
		return st, err
	}
	defer f.Close()
	data, closeData, err := debData(f)
	if err != nil {
		return st, err
	}
	defer closeData()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return st, err
	}
	defer root.Close()
	x := debExtractor{root: root}
	tr := tar.NewReader(bufio.NewReaderSize(ctxReader{ctx, data}, 1<<20))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, fmt.Errorf("read data archive: %w", err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return st, err
		}
	}
	if x.vmlinuzVersion == "" {
		return st, errors.New("package has no boot/vmlinuz-*")
	}
	if x.modulesVersion != "" && x.modulesVersion != x.vmlinuzVersion {
		return st, fmt.Errorf("package has vmlinuz-%s but modules for %s", x.vmlinuzVersion, x.modulesVersion)
	}
	if x.configVersion != "" && x.configVersion != x.vmlinuzVersion {
		return st, fmt.Errorf("package has vmlinuz-%s but config-%s", x.vmlinuzVersion, x.configVersion)
	}
	st.version = x.vmlinuzVersion
	st.vmlinuz = true
	st.config = x.configVersion != ""
	st.modules = x.modulesVersion != ""
	return st, nil
}

// debData finds the data.tar member of a .deb and returns its
// decompressed stream.
func debData(r io.Reader) (io.Reader, func(), error) {
	ar, err := newArReader(r)
	if err != nil {
		return nil, nil, fmt.Errorf("not a .deb: %w", err)
	}
	for {
		name, _, err := ar.next()
		if err == io.EOF {
			return nil, nil, errors.New("not a .deb: no data.tar member")
		}
		if err != nil {
			return nil, nil, fmt.Errorf("not a .deb: %w", err)
		}
		nop := func() {}
		switch name {
		case "data.tar":
			return ar, nop, nil
		case "data.tar.xz":
			zr, err := xz.NewReader(ar)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", name, err)
			}
			return zr, nop, nil
		case "data.tar.zst":
			zr, err := zstd.NewReader(ar)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", name, err)
			}
			return zr, zr.Close, nil
		case "data.tar.gz":
			zr, err := gzip.NewReader(ar)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", name, err)
			}
			return zr, nop, nil
		}
		if strings.HasPrefix(name, "data.tar") {
			return nil, nil, fmt.Errorf("unsupported data member %s (want data.tar, .xz, .zst or .gz)", name)
		}
	}
}

// debExtractor writes the wanted entries of a kernel package's data archive
// into a staging directory.
type debExtractor struct {
	root           *os.Root
	vmlinuzVersion string
	configVersion  string
	modulesVersion string
}

func (x *debExtractor) entry(hdr *tar.Header, r io.Reader) error {
	name, err := cleanEntryName(hdr.Name)
	if err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeLink {
		// Hard link targets are names in the same archive: the same rules.
		if _, err := cleanEntryName(hdr.Linkname); err != nil {
			return err
		}
	}
	dir, base := path.Split(name)
	switch {
	case dir == "boot/" && strings.HasPrefix(base, "vmlinuz-"):
		v := strings.TrimPrefix(base, "vmlinuz-")
		if x.vmlinuzVersion != "" {
			return fmt.Errorf("package has two kernels: vmlinuz-%s and vmlinuz-%s", x.vmlinuzVersion, v)
		}
		if hdr.Typeflag != tar.TypeReg || !validVersion(v) {
			return fmt.Errorf("%s: not a regular file named by a kernel version", hdr.Name)
		}
		x.vmlinuzVersion = v
		return writeEntry(x.root, VmlinuzFile, r, 0o644)
	case dir == "boot/" && strings.HasPrefix(base, "config-"):
		v := strings.TrimPrefix(base, "config-")
		if hdr.Typeflag != tar.TypeReg || !validVersion(v) || x.configVersion != "" {
			return fmt.Errorf("%s: unexpected kernel config", hdr.Name)
		}
		x.configVersion = v
		return writeEntry(x.root, ConfigFile, r, 0o644)
	}
	rel, ok := strings.CutPrefix(strings.TrimPrefix(name, "usr/"), "lib/modules/")
	if !ok {
		return nil
	}
	version, inner, _ := strings.Cut(rel, "/")
	if !validVersion(version) {
		return fmt.Errorf("%s: bad kernel version directory", hdr.Name)
	}
	if x.modulesVersion != "" && x.modulesVersion != version {
		return fmt.Errorf("package has modules for two kernels: %s and %s", x.modulesVersion, version)
	}
	x.modulesVersion = version
	target := path.Join(ModulesRoot, "lib", "modules", version, inner)
	linkTarget := ""
	if hdr.Typeflag == tar.TypeLink {
		ln, _ := cleanEntryName(hdr.Linkname) // checked above
		lin, ok := strings.CutPrefix(strings.TrimPrefix(ln, "usr/"), "lib/modules/"+version+"/")
		if !ok {
			return fmt.Errorf("%s: hard link to %s outside the modules tree", hdr.Name, hdr.Linkname)
		}
		linkTarget = path.Join(ModulesRoot, "lib", "modules", version, lin)
	}
	return putTreeEntry(x.root, target, inner, hdr, r, linkTarget)
}

// cleanEntryName turns an archive name ("./lib/modules/...") into a clean
// relative path, refusing absolute names and ".." components.
func cleanEntryName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("archive entry %q: absolute name", name)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("archive entry %q: path traversal", name)
		}
	}
	return path.Clean(strings.TrimPrefix(name, "./")), nil
}

// putTreeEntry writes one entry of a modules tree at target (relative to
// root); inner is its path inside the tree, for symlink checks.
func putTreeEntry(root *os.Root, target, inner string, hdr *tar.Header, r io.Reader, linkTarget string) error {
	if inner == "" || inner == "." {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%s: modules directory is not a directory", hdr.Name)
		}
		return root.MkdirAll(target, 0o755)
	}
	if err := root.MkdirAll(path.Dir(target), 0o755); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return root.MkdirAll(target, 0o755)
	case tar.TypeReg:
		mode := os.FileMode(0o644)
		if hdr.Mode&0o111 != 0 {
			mode = 0o755
		}
		return writeEntry(root, target, r, mode)
	case tar.TypeSymlink:
		skip, err := checkTreeSymlink(inner, hdr.Linkname)
		if err != nil || skip {
			return err
		}
		return root.Symlink(hdr.Linkname, target)
	case tar.TypeLink:
		return root.Link(linkTarget, target)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return fmt.Errorf("archive entry %q: device nodes and fifos are not allowed", hdr.Name)
	default:
		return fmt.Errorf("archive entry %q: unsupported type %q", hdr.Name, hdr.Typeflag)
	}
}

// checkTreeSymlink accepts a symlink at inner (relative to a modules tree)
// pointing to target when it stays inside the tree. The top-level "build"
// and "source" links point into kernel headers elsewhere; they are skipped.
func checkTreeSymlink(inner, target string) (skip bool, err error) {
	if inner == "build" || inner == "source" {
		return true, nil
	}
	if target == "" || strings.HasPrefix(target, "/") {
		return false, fmt.Errorf("symlink %s -> %s: absolute target", inner, target)
	}
	resolved := path.Join(path.Dir(inner), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return false, fmt.Errorf("symlink %s -> %s: points outside the modules tree", inner, target)
	}
	return false, nil
}

func writeEntry(root *os.Root, name string, r io.Reader, mode os.FileMode) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
