// Package image keeps banger's images: one directory per image under
// paths.Layout.ImagesDir(), each holding
//
//	rootfs.ext4      the root filesystem, shared read-only by every VM
//	work-seed.ext4   the initial /root, copied into each VM's work disk
//	manifest.json    what the builder recorded
//	image.json       the Image record, written last and atomically: an
//	                 image directory without it is not an image (yet)
//
// The default golden image is built by the root helper (a Builder) the
// first time it is asked for; its kernel goes to the kernel store.
package image

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/banger/banger/internal/namelock"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/image/golden"
	"github.com/banger/banger/internal/kernel"
)

// Files of an image directory.
const (
	RootFSFile   = golden.RootfsFile
	WorkSeedFile = golden.WorkSeedFile
	ManifestFile = golden.ManifestFile
	RecordFile   = "image.json"
	// KernelDir is where a build leaves the image's kernel, until it is
	// adopted into the kernel store.
	KernelDir = golden.KernelDir
)

// DefaultKernelName is the kernel-store name of the golden image's kernel.
const DefaultKernelName = "debian-cloud"

// Image is the record of a complete image (image.json).
type Image struct {
	Name string `json:"name"`
	// Dir, RootFS and WorkSeed are paths, set when the image is loaded.
	Dir      string `json:"-"`
	RootFS   string `json:"-"`
	WorkSeed string `json:"-"`
	// Kernel names the image's kernel in the kernel store.
	Kernel        string    `json:"kernel"`
	SizeBytes     int64     `json:"size_bytes"`
	WorkSeedBytes int64     `json:"work_seed_bytes"`
	Created       time.Time `json:"created"`
	Source        string    `json:"source"`
	// Manifest is the builder's manifest.json.
	Manifest json.RawMessage `json:"manifest,omitempty"`
}

// Builder makes ImagesDir/<name> complete (rootfs.ext4, work-seed.ext4,
// kernel/, manifest.json), owned by the owner, or leaves it absent. The
// daemon's asks the root helper.
type Builder interface {
	BuildGolden(ctx context.Context, name string, progress func(api.Event)) error
}

// StoreConfig configures a Store.
type StoreConfig struct {
	// Dir holds one directory per image (paths.Layout.ImagesDir()).
	Dir     string
	Kernels *kernel.Store
	Builder Builder
	Log     *slog.Logger
	// InUse names the VMs using an image; Remove refuses while it names
	// any. nil means none ever does.
	InUse func(name string) []string
}

// Store is the set of images in a directory.
type Store struct {
	dir     string
	kernels *kernel.Store
	builder Builder
	log     *slog.Logger
	inUse   func(string) []string
	golden  string
	locks   namelock.Set
}

const deleteInfix = ".delete-"

// NewStore opens the store in cfg.Dir, creating it (0700) if needed.
func NewStore(cfg StoreConfig) (*Store, error) {
	if !filepath.IsAbs(cfg.Dir) {
		return nil, fmt.Errorf("image store: dir %q is not an absolute path", cfg.Dir)
	}
	if cfg.Kernels == nil {
		return nil, errors.New("image store: no kernel store")
	}
	s := &Store{
		dir:     filepath.Clean(cfg.Dir),
		kernels: cfg.Kernels,
		builder: cfg.Builder,
		log:     cfg.Log,
		inUse:   cfg.InUse,
		golden:  golden.DefaultSpec().Name,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	s.sweep()
	return s, nil
}

// sweep removes images whose removal a crash interrupted. Half-built
// images (a build's "<name>.tmp-*") belong to the root helper, which
// removes them itself before its next build.
func (s *Store) sweep() {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		s.log.Warn("image store: sweep", "dir", s.dir, "err", err)
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), deleteInfix) {
			p := filepath.Join(s.dir, e.Name())
			if err := os.RemoveAll(p); err != nil {
				s.log.Warn("image store: remove stale entry", "path", p, "err", err)
			}
		}
	}
}

// DefaultName is the image the store knows how to build.
func (s *Store) DefaultName() string { return s.golden }

var nameRule = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateName checks an image name: a DNS label.
func ValidateName(name string) error {
	if !nameRule.MatchString(name) {
		return api.WithHint(api.Errorf(api.CodeBadRequest, "%q is not a valid image name", name),
			"use 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'")
	}
	return nil
}

func (s *Store) path(name string) string { return filepath.Join(s.dir, name) }

// load reads the image in dir.
func load(dir string) (Image, error) {
	data, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if err != nil {
		return Image{}, err
	}
	var img Image
	if err := json.Unmarshal(data, &img); err != nil {
		return Image{}, fmt.Errorf("%s: %w", filepath.Join(dir, RecordFile), err)
	}
	img.Dir = dir
	img.RootFS = filepath.Join(dir, RootFSFile)
	img.WorkSeed = filepath.Join(dir, WorkSeedFile)
	return img, nil
}

// List returns the complete images, sorted by name.
func (s *Store) List(ctx context.Context) ([]Image, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := []Image{}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !e.IsDir() || !nameRule.MatchString(e.Name()) {
			continue
		}
		img, err := load(s.path(e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // being built or registered
		}
		if err != nil {
			s.log.Warn("image store: skip unreadable image", "name", e.Name(), "err", err)
			continue
		}
		out = append(out, img)
	}
	slices.SortFunc(out, func(a, b Image) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Get returns the named image, or an error matching api.ErrNotFound.
func (s *Store) Get(ctx context.Context, name string) (Image, error) {
	if err := ValidateName(name); err != nil {
		return Image{}, err
	}
	img, err := load(s.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return Image{}, s.notFound(name)
	}
	if err != nil {
		return Image{}, fmt.Errorf("get image %q: %w", name, err)
	}
	return img, nil
}

func (s *Store) notFound(name string) error {
	if name == s.golden {
		return api.WithHint(api.Errorf(api.CodeNotFound, "image %q is not pulled yet", name),
			"pull it (a few minutes, once): banger image pull "+name)
	}
	return api.WithHint(api.Errorf(api.CodeNotFound, "image %q not found", name),
		fmt.Sprintf("see the images there are with: banger image list (banger can build %s)", s.golden))
}

// Remove deletes the named image; its kernel stays in the kernel store. It
// is refused (api.ErrConflict) while InUse names VMs.
func (s *Store) Remove(ctx context.Context, name string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	unlock, err := s.locks.Lock(ctx, name)
	if err != nil {
		return fmt.Errorf("remove image %q: %w", name, err)
	}
	defer unlock()
	dir := s.path(name)
	if _, err := os.Lstat(filepath.Join(dir, RecordFile)); errors.Is(err, fs.ErrNotExist) {
		return s.notFound(name)
	}
	if s.inUse != nil {
		if vms := s.inUse(name); len(vms) > 0 {
			return api.WithHint(api.Errorf(api.CodeConflict, "image %q is in use by %s", name, strings.Join(vms, ", ")),
				"delete those VMs first, then run: banger image rm "+name)
		}
	}
	if err := s.discard(dir); err != nil {
		return fmt.Errorf("remove image %q: %w", name, err)
	}
	s.log.Info("image removed", "name", name)
	return nil
}

// discard renames dir aside, so that it stops being an image at once, then
// deletes it. A deletion that fails is logged; NewStore retries it.
func (s *Store) discard(dir string) error {
	trash := filepath.Join(s.dir, "."+filepath.Base(dir)+deleteInfix+randomSuffix())
	if err := os.Rename(dir, trash); err != nil {
		return err
	}
	if err := os.RemoveAll(trash); err != nil {
		s.log.Warn("image store: remove files", "path", trash, "err", err)
	}
	return nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
