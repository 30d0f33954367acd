package kernel

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/banger/banger/internal/namelock"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/banger/banger/internal/api"
)

// StoreConfig configures a Store.
type StoreConfig struct {
	// Dir holds one directory per kernel (paths.Layout.KernelsDir()).
	Dir string
	Log *slog.Logger
	// InUse names what uses a kernel (VMs); Remove refuses while it names
	// anything. nil means nothing ever does.
	InUse func(name string) []string
	// BuildInitramfs writes the initramfs of k with agentBinary as /init to
	// w; Initramfs caches what it writes. The daemon passes one that calls
	// guest/initramfs.Build (which imports this package, so this package
	// cannot call it). nil makes Initramfs fail.
	BuildInitramfs func(ctx context.Context, k Kernel, agentBinary string, w io.Writer) error
	// InitramfsTag is mixed into the initramfs cache key: the daemon passes
	// its build version, so an upgraded initramfs builder never serves an
	// image the old one made.
	InitramfsTag string
}

// Store is the set of named kernels in a directory. Operations on one name
// are serialised (a per-name lock, re-checked after taking it); a kernel
// directory appears complete through a rename, or not at all.
type Store struct {
	dir       string
	log       *slog.Logger
	inUse     func(string) []string
	buildInit func(ctx context.Context, k Kernel, agentBinary string, w io.Writer) error
	initTag   string
	locks     namelock.Set
	agents    agentSums
}

// Hidden entries of the store directory: an import's staging directory
// (kernel's install), an upload being received, a kernel being removed.
// A crash leaves them behind; NewStore removes them.
const (
	importInfix = ".import-"
	uploadInfix = ".upload-"
	deleteInfix = ".delete-"
)

var nameRule = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// ValidateName checks a kernel name: 1-63 characters of a-z, 0-9, '.' and
// '-', starting with a letter or digit.
func ValidateName(name string) error {
	if !nameRule.MatchString(name) {
		return api.WithHint(api.Errorf(api.CodeBadRequest, "%q is not a valid kernel name", name),
			"use 1-63 characters of a-z, 0-9, '.' and '-', starting with a letter or digit")
	}
	return nil
}

// NewStore opens the store in cfg.Dir, creating it (0700) if needed, and
// removes what a crashed import, upload or removal left behind.
func NewStore(cfg StoreConfig) (*Store, error) {
	if !filepath.IsAbs(cfg.Dir) {
		return nil, fmt.Errorf("kernel store: dir %q is not an absolute path", cfg.Dir)
	}
	s := &Store{
		dir:       filepath.Clean(cfg.Dir),
		log:       cfg.Log,
		inUse:     cfg.InUse,
		buildInit: cfg.BuildInitramfs,
		initTag:   cfg.InitramfsTag,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("kernel store: %w", err)
	}
	s.sweep()
	return s, nil
}

// sweep removes stale hidden entries. Failures are logged: a leftover
// wastes space but breaks nothing.
func (s *Store) sweep() {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		s.log.Warn("kernel store: sweep", "dir", s.dir, "err", err)
		return
	}
	for _, e := range entries {
		p := filepath.Join(s.dir, e.Name())
		if strings.HasPrefix(e.Name(), ".") {
			if strings.Contains(e.Name(), importInfix) || strings.Contains(e.Name(), uploadInfix) || strings.Contains(e.Name(), deleteInfix) {
				if err := os.RemoveAll(p); err != nil {
					s.log.Warn("kernel store: remove stale entry", "path", p, "err", err)
				} else {
					s.log.Info("kernel store: removed stale entry", "path", p)
				}
			}
			continue
		}
		if e.IsDir() {
			s.sweepInitrdTemps(p)
		}
	}
}

// List returns the kernels in the store, sorted by name. A directory that
// does not load (damaged by hand) is logged and left out.
func (s *Store) List(ctx context.Context) ([]Kernel, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list kernels: %w", err)
	}
	out := []Kernel{}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !e.IsDir() || !nameRule.MatchString(e.Name()) {
			continue
		}
		k, err := Load(filepath.Join(s.dir, e.Name()))
		if err != nil {
			s.log.Warn("kernel store: skip unreadable kernel", "name", e.Name(), "err", err)
			continue
		}
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b Kernel) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Get returns the named kernel, or an error matching api.ErrNotFound.
func (s *Store) Get(ctx context.Context, name string) (Kernel, error) {
	if err := ValidateName(name); err != nil {
		return Kernel{}, err
	}
	k, err := Load(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return Kernel{}, notFound(name)
	}
	if err != nil {
		return Kernel{}, fmt.Errorf("get kernel %q: %w", name, err)
	}
	return k, nil
}

func notFound(name string) error {
	return api.WithHint(api.Errorf(api.CodeNotFound, "kernel %q not found", name),
		"see the kernels there are with: banger kernel list")
}

func alreadyExists(name string) error {
	return api.WithHint(api.Errorf(api.CodeAlreadyExists, "kernel %q already exists", name),
		"pick another name, or remove it first: banger kernel rm "+name)
}

func (s *Store) path(name string) string { return filepath.Join(s.dir, name) }

// ImportDeb imports a Debian kernel package (see the package function
// ImportDeb) as name.
func (s *Store) ImportDeb(ctx context.Context, name, debPath string) (Kernel, error) {
	return s.create(ctx, name, func(ctx context.Context, dest string) (Kernel, error) {
		return install(ctx, dest, func(ctx context.Context, tmp string) (staged, error) {
			return stageDeb(ctx, debPath, tmp)
		})
	})
}

// ImportFiles imports a kernel image and its optional modules directory
// (see the package function ImportFiles) as name.
func (s *Store) ImportFiles(ctx context.Context, name, kernelPath, modulesDir string) (Kernel, error) {
	return s.create(ctx, name, func(ctx context.Context, dest string) (Kernel, error) {
		return install(ctx, dest, func(ctx context.Context, tmp string) (staged, error) {
			return stageFiles(ctx, kernelPath, modulesDir, tmp)
		})
	})
}

// create runs build for a name that is free, under the name's lock. build
// must leave dest complete or absent.
func (s *Store) create(ctx context.Context, name string, build func(ctx context.Context, dest string) (Kernel, error)) (Kernel, error) {
	if err := ValidateName(name); err != nil {
		return Kernel{}, err
	}
	unlock, err := s.locks.Lock(ctx, name)
	if err != nil {
		return Kernel{}, fmt.Errorf("import kernel %q: %w", name, err)
	}
	defer unlock()
	dest := s.path(name)
	if _, err := os.Lstat(dest); err == nil {
		return Kernel{}, alreadyExists(name)
	}
	k, err := build(ctx, dest)
	if errors.Is(err, fs.ErrExist) {
		return Kernel{}, alreadyExists(name)
	}
	if err != nil {
		return Kernel{}, fmt.Errorf("import kernel %q: %w", name, err)
	}
	s.log.Info("kernel imported", "name", name, "version", k.Version, "source", k.Source)
	return k, nil
}

// Remove deletes the named kernel. It is refused (api.ErrConflict) while
// InUse names users. The directory is first renamed aside, so the kernel
// disappears at once even if deleting its files takes a while or fails.
func (s *Store) Remove(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	unlock, err := s.locks.Lock(ctx, name)
	if err != nil {
		return fmt.Errorf("remove kernel %q: %w", name, err)
	}
	defer unlock()
	dest := s.path(name)
	if _, err := os.Lstat(dest); errors.Is(err, fs.ErrNotExist) {
		return notFound(name)
	}
	if s.inUse != nil {
		if users := s.inUse(name); len(users) > 0 {
			return api.WithHint(api.Errorf(api.CodeConflict, "kernel %q is in use by %s", name, strings.Join(users, ", ")),
				"delete those first, then run: banger kernel rm "+name)
		}
	}
	trash := filepath.Join(s.dir, "."+name+deleteInfix+randomSuffix())
	if err := os.Rename(dest, trash); err != nil {
		return fmt.Errorf("remove kernel %q: %w", name, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		// Gone from the store already; the next start sweeps the rest.
		s.log.Warn("kernel store: remove files", "path", trash, "err", err)
	}
	s.log.Info("kernel removed", "name", name)
	return nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
