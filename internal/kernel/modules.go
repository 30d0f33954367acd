package kernel

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Module is one loadable kernel module of a modules directory.
type Module struct {
	// Name is the module name with '-' normalised to '_' ("virtio_blk").
	Name string
	// Path is the file, relative to the modules directory
	// ("kernel/drivers/block/virtio_blk.ko", possibly .ko.xz/.ko.zst/.ko.gz).
	Path string
	// Depends are the names of the modules that must be loaded first.
	Depends []string
}

// ModuleName turns a module file path or name into the normalised module
// name: directory and .ko[.xz|.zst|.gz] suffix dropped, '-' becomes '_', as
// the kernel and modprobe treat them alike.
func ModuleName(p string) string {
	base := path.Base(p)
	base = strings.TrimSuffix(base, moduleSuffix(base))
	return strings.ReplaceAll(base, "-", "_")
}

// moduleSuffix returns the module file ending of name (".ko", ".ko.xz",
// ".ko.zst", ".ko.gz"), or "".
func moduleSuffix(name string) string {
	for _, s := range [...]string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(name, s) {
			return s
		}
	}
	return ""
}

func isModuleFile(name string) bool { return moduleSuffix(name) != "" }

// ParseModulesDep parses depmod's modules.dep: one line per module,
// "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko ...".
func ParseModulesDep(r io.Reader) ([]Module, error) {
	var mods []Module
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, deps, ok := strings.Cut(line, ":")
		if !ok || file == "" || !isModuleFile(file) {
			return nil, fmt.Errorf("modules.dep line %d: malformed %q", n, line)
		}
		m := Module{Name: ModuleName(file), Path: file}
		for _, d := range strings.Fields(deps) {
			m.Depends = append(m.Depends, ModuleName(d))
		}
		mods = append(mods, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	return mods, nil
}

// parseModulesBuiltin reads modules.builtin (paths of modules compiled into
// the kernel image) into a set of names.
func parseModulesBuiltin(r io.Reader) (map[string]bool, error) {
	set := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			set[ModuleName(line)] = true
		}
	}
	return set, sc.Err()
}

// ModuleIndex answers which files to load, in which order, for a set of
// modules of one kernel. Files are read through an os.Root, so no symlink
// in the directory can lead a read outside it.
type ModuleIndex struct {
	root    *os.Root
	dir     string
	paths   map[string]string   // name -> path relative to dir
	deps    map[string][]string // from modules.dep; nil means read .modinfo
	builtin map[string]bool
}

// IndexModules indexes a kernel's modules directory (lib/modules/<version>).
// Dependencies come from modules.dep when it exists, otherwise from each
// module's .modinfo "depends=" (Debian's packages ship no modules.dep: depmod
// writes it at install time). Modules in modules.builtin count as present.
// Close releases the directory.
func IndexModules(dir string) (*ModuleIndex, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("index modules: %w", err)
	}
	ix := &ModuleIndex{root: root, dir: dir, paths: map[string]string{}, builtin: map[string]bool{}}
	if err := ix.load(); err != nil {
		root.Close()
		return nil, fmt.Errorf("index modules %s: %w", dir, err)
	}
	return ix, nil
}

func (ix *ModuleIndex) load() error {
	if f, err := ix.root.Open("modules.builtin"); err == nil {
		ix.builtin, err = parseModulesBuiltin(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("read modules.builtin: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if f, err := ix.root.Open("modules.dep"); err == nil {
		mods, err := ParseModulesDep(f)
		f.Close()
		if err != nil {
			return err
		}
		ix.deps = map[string][]string{}
		for _, m := range mods {
			ix.paths[m.Name] = m.Path
			ix.deps[m.Name] = m.Depends
		}
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// No modules.dep: find the files; dependencies are read on demand.
	return fs.WalkDir(ix.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || !isModuleFile(p) {
			return nil
		}
		name := ModuleName(p)
		// Like depmod, a module under updates/ overrides the stock one.
		if old, dup := ix.paths[name]; !dup || (strings.HasPrefix(p, "updates/") && !strings.HasPrefix(old, "updates/")) {
			ix.paths[name] = p
		}
		return nil
	})
}

// Close releases the modules directory.
func (ix *ModuleIndex) Close() error { return ix.root.Close() }

// Builtin reports whether the named module is compiled into the kernel.
func (ix *ModuleIndex) Builtin(name string) bool { return ix.builtin[ModuleName(name)] }

// Resolve returns the modules to load for wanted, dependencies first, each
// once. Built-in modules (wanted or depended upon) are left out. A module
// that is neither present nor built in is an error, as is a dependency
// cycle. The order is deterministic: wanted in the given order, each one's
// dependencies in name order before it.
func (ix *ModuleIndex) Resolve(wanted []string) ([]Module, error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var order []Module
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, name), " -> "))
		}
		if ix.builtin[name] {
			state[name] = done
			return nil
		}
		p, ok := ix.paths[name]
		if !ok {
			if len(chain) > 0 {
				return fmt.Errorf("module %q (needed by %s): not in %s and not built in", name, chain[len(chain)-1], ix.dir)
			}
			return fmt.Errorf("module %q: not in %s and not built in", name, ix.dir)
		}
		deps, err := ix.depends(name, p)
		if err != nil {
			return err
		}
		state[name] = visiting
		for _, d := range deps {
			if err := visit(d, append(slices.Clip(chain), name)); err != nil {
				return err
			}
		}
		state[name] = done
		order = append(order, Module{Name: name, Path: p, Depends: deps})
		return nil
	}
	for _, w := range wanted {
		if err := visit(ModuleName(w), nil); err != nil {
			return nil, fmt.Errorf("resolve modules: %w", err)
		}
	}
	return order, nil
}

// depends returns a module's dependencies, sorted by name.
func (ix *ModuleIndex) depends(name, p string) ([]string, error) {
	var deps []string
	if ix.deps != nil {
		deps = slices.Clone(ix.deps[name])
	} else {
		data, err := ix.ReadFile(Module{Name: name, Path: p})
		if err != nil {
			return nil, err
		}
		if deps, err = modinfoDepends(data); err != nil {
			return nil, fmt.Errorf("module %s: %w", p, err)
		}
	}
	slices.Sort(deps)
	return slices.Compact(deps), nil
}

// modinfoDepends reads "depends=a,b" from a module's .modinfo section.
func modinfoDepends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("read ELF: %w", err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	var deps []string
	for _, kv := range bytes.Split(info, []byte{0}) {
		v, ok := bytes.CutPrefix(kv, []byte("depends="))
		if !ok {
			continue
		}
		for _, d := range strings.Split(string(v), ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, ModuleName(d))
			}
		}
	}
	return deps, nil
}

// ReadFile returns a module's contents, decompressed when the file is
// .ko.xz, .ko.zst or .ko.gz (finit_module wants a plain ELF unless the
// kernel itself decompresses, which the initramfs cannot count on).
func (ix *ModuleIndex) ReadFile(m Module) ([]byte, error) {
	f, err := ix.root.Open(m.Path)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", m.Name, err)
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(m.Path, ".ko.xz"):
		if r, err = xz.NewReader(f); err != nil {
			return nil, fmt.Errorf("read module %s: xz: %w", m.Path, err)
		}
	case strings.HasSuffix(m.Path, ".ko.zst"):
		zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("read module %s: zstd: %w", m.Path, err)
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(m.Path, ".ko.gz"):
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("read module %s: gzip: %w", m.Path, err)
		}
		r = zr
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", m.Path, err)
	}
	return data, nil
}

// GuestModules are the modules banger's guests need, by role. Resolve adds
// their dependencies (virtio_ring before virtio, failover before
// net_failover, vsock before its transports) and drops what the kernel has
// built in.
//
//   - root image, per-VM layer and work disks: virtio_blk, over virtio_pci
//     (QEMU q35) or virtio_mmio (Firecracker, QEMU microvm)
//   - network: virtio_net
//   - agent channel: virtio_console (QEMU virtio-serial),
//     vmw_vsock_virtio_transport (Firecracker vsock)
//   - overlay root: overlay
//   - filesystem of all three disks: ext4 (built into Debian's kernel)
func GuestModules() []string {
	return []string{
		"virtio_pci", "virtio_mmio", "virtio_blk",
		"virtio_net",
		"virtio_console", "vmw_vsock_virtio_transport",
		"overlay",
		"ext4",
	}
}
