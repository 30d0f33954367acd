// Package kernel turns guest kernels into the artefacts banger boots: an ELF
// vmlinux for Firecracker, the bzImage for QEMU, the modules tree from which
// the initramfs is packed, and the kernel's build configuration.
//
// A kernel directory (paths.Layout.KernelsDir()/<name>) holds:
//
//	vmlinuz                          the bzImage, when imported from one
//	vmlinux                          uncompressed ELF kernel
//	config                           build configuration, when known
//	modules/lib/modules/<version>/   the modules tree, when the kernel has one
//	kernel.json                      the Kernel record
//
// Imports build the directory beside its final place and rename it in, so a
// reader sees a complete kernel or none.
package kernel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Files of a kernel directory.
const (
	VmlinuzFile = "vmlinuz"
	VmlinuxFile = "vmlinux"
	ConfigFile  = "config"
	ModulesRoot = "modules"
	RecordFile  = "kernel.json"
)

// Kernel is the record of an imported kernel (kernel.json).
type Kernel struct {
	// Dir is where the kernel lives; set by Load and the imports, not stored.
	Dir string `json:"-"`
	// Name is the directory's base name.
	Name string `json:"name"`
	// Version is the kernel release, as uname -r prints it.
	Version string `json:"version"`
	// Source says where the kernel came from (the .deb or the kernel file).
	Source        string `json:"source"`
	VmlinuxSHA256 string `json:"vmlinux_sha256"`
	VmlinuxSize   int64  `json:"vmlinux_size"`
	// VmlinuzSize is 0 when the kernel was imported as an ELF vmlinux.
	VmlinuzSize int64 `json:"vmlinuz_size,omitempty"`
	// ModulesSize is the total size of the modules tree, 0 when there is none.
	ModulesSize int64 `json:"modules_size,omitempty"`
	HasModules  bool  `json:"has_modules"`
	HasConfig   bool  `json:"has_config"`
	// MMIOCmdlineDevices is CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES: whether the
	// kernel finds virtio-mmio devices from virtio_mmio.device= parameters,
	// which Firecracker before 1.8 relies on. False when the config is unknown.
	MMIOCmdlineDevices bool      `json:"mmio_cmdline_devices"`
	Created            time.Time `json:"created"`
}

// VmlinuxPath is the ELF kernel, for Firecracker.
func (k Kernel) VmlinuxPath() string { return filepath.Join(k.Dir, VmlinuxFile) }

// VmlinuzPath is the bzImage, or "" when the kernel was imported as ELF.
func (k Kernel) VmlinuzPath() string {
	if k.VmlinuzSize == 0 {
		return ""
	}
	return filepath.Join(k.Dir, VmlinuzFile)
}

// ConfigPath is the build configuration, or "" when unknown.
func (k Kernel) ConfigPath() string {
	if !k.HasConfig {
		return ""
	}
	return filepath.Join(k.Dir, ConfigFile)
}

// ModulesDir is lib/modules/<version> of this kernel, or "" when it has no
// modules.
func (k Kernel) ModulesDir() string {
	if !k.HasModules {
		return ""
	}
	return treeDir(k.Dir, k.Version)
}

func treeDir(dir, version string) string {
	return filepath.Join(dir, ModulesRoot, "lib", "modules", version)
}

// Load reads the kernel stored in dir.
func Load(dir string) (Kernel, error) {
	data, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if err != nil {
		return Kernel{}, fmt.Errorf("load kernel %s: %w", dir, err)
	}
	var k Kernel
	if err := json.Unmarshal(data, &k); err != nil {
		return Kernel{}, fmt.Errorf("load kernel %s: %s: %w", dir, RecordFile, err)
	}
	if !validVersion(k.Version) {
		return Kernel{}, fmt.Errorf("load kernel %s: bad version %q", dir, k.Version)
	}
	k.Dir = dir
	if _, err := os.Stat(k.VmlinuxPath()); err != nil {
		return Kernel{}, fmt.Errorf("load kernel %s: %w", dir, err)
	}
	return k, nil
}

// staged is what an import put into the temporary directory.
type staged struct {
	source  string
	version string
	vmlinuz bool // vmlinuz written; vmlinux is to be extracted from it
	config  bool
	modules bool
}

// install builds a kernel directory for dest in a temporary directory beside
// it, through stage, completes it and renames it into place. dest must not
// exist.
func install(ctx context.Context, dest string, stage func(ctx context.Context, tmp string) (staged, error)) (Kernel, error) {
	dest = filepath.Clean(dest)
	if _, err := os.Lstat(dest); err == nil {
		return Kernel{}, fmt.Errorf("%s: %w", dest, fs.ErrExist)
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return Kernel{}, err
	}
	// A crash leaves this hidden directory behind; it never becomes dest.
	tmp, err := os.MkdirTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".import-")
	if err != nil {
		return Kernel{}, err
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	st, err := stage(ctx, tmp)
	if err != nil {
		return Kernel{}, err
	}
	k, err := complete(ctx, tmp, filepath.Base(dest), st)
	if err != nil {
		return Kernel{}, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return Kernel{}, err
	}
	if err := syncfs(tmp); err != nil {
		return Kernel{}, err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dest, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return Kernel{}, fmt.Errorf("%s: %w", dest, fs.ErrExist)
		}
		return Kernel{}, fmt.Errorf("rename %s into place: %w", dest, err)
	}
	done = true
	if err := syncfs(filepath.Dir(dest)); err != nil {
		return Kernel{}, err
	}
	k.Dir = dest
	return k, nil
}

// syncfs flushes the filesystem holding path: one call covers the
// thousands of module files an import writes.
func syncfs(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// complete extracts vmlinux, reads the config and writes kernel.json.
func complete(ctx context.Context, tmp, name string, st staged) (Kernel, error) {
	k := Kernel{Name: name, Version: st.version, Source: st.source, HasModules: st.modules, Created: time.Now().UTC()}
	if !validVersion(k.Version) {
		return Kernel{}, fmt.Errorf("bad kernel version %q", k.Version)
	}
	vmlinux := filepath.Join(tmp, VmlinuxFile)
	if st.vmlinuz {
		vmlinuz := filepath.Join(tmp, VmlinuzFile)
		size, err := extractFile(ctx, vmlinuz, vmlinux)
		if err != nil {
			return Kernel{}, err
		}
		k.VmlinuzSize = size
	}
	f, err := os.Open(vmlinux)
	if err != nil {
		return Kernel{}, err
	}
	defer f.Close()
	if err := checkVmlinuxELF(f); err != nil {
		return Kernel{}, fmt.Errorf("check vmlinux: %w", err)
	}
	h := sha256.New()
	if k.VmlinuxSize, err = io.Copy(h, ctxReader{ctx, f}); err != nil {
		return Kernel{}, fmt.Errorf("hash vmlinux: %w", err)
	}
	k.VmlinuxSHA256 = hex.EncodeToString(h.Sum(nil))

	configPath := filepath.Join(tmp, ConfigFile)
	if !st.config {
		// A kernel built with CONFIG_IKCONFIG carries its own.
		text, err := embeddedConfig(vmlinux)
		if err != nil {
			return Kernel{}, err
		}
		if text != nil {
			if err := os.WriteFile(configPath, text, 0o644); err != nil {
				return Kernel{}, err
			}
			st.config = true
		}
	}
	if st.config {
		cf, err := os.Open(configPath)
		if err != nil {
			return Kernel{}, err
		}
		cfg, err := ParseConfig(cf)
		cf.Close()
		if err != nil {
			return Kernel{}, err
		}
		k.HasConfig = true
		k.MMIOCmdlineDevices = cfg["CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES"] == "y"
	}
	if k.HasModules {
		err := filepath.WalkDir(treeDir(tmp, k.Version), func(_ string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				fi, err := d.Info()
				if err != nil {
					return err
				}
				k.ModulesSize += fi.Size()
			}
			return nil
		})
		if err != nil {
			return Kernel{}, fmt.Errorf("measure modules: %w", err)
		}
	}
	rec, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return Kernel{}, err
	}
	if err := os.WriteFile(filepath.Join(tmp, RecordFile), append(rec, '\n'), 0o644); err != nil {
		return Kernel{}, err
	}
	return k, nil
}

// extractFile writes the vmlinux of the bzImage at src to dst and returns
// the bzImage's size.
func extractFile(ctx context.Context, src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return 0, err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, err
	}
	err = ExtractVmlinux(in, fi.Size(), ctxWriter{ctx, out})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return fi.Size(), err
}

// ctxReader and ctxWriter make long copies stop when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
