package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/atomicfile"
	"github.com/banger/banger/internal/kernel"
)

// Progress stages Ensure reports itself (the builder reports its own).
const (
	StagePull     = "pull"
	StageRegister = "register"
)

// Ensure returns the named image, building it first when it is the default
// golden image and is not there yet: the Builder makes the directory, its
// kernel is registered in the kernel store as DefaultKernelName (or reused
// when a kernel of that name has the same vmlinux), and image.json is
// written. Other missing names are api.ErrNotFound. Concurrent calls for
// one name build once: the others wait (their ctx can end the wait), find
// the image and return it.
//
// A build that fails leaves no image directory behind, except a complete
// build output whose registration did not happen (the root helper finished
// but the answer was lost): the next Ensure registers it without
// rebuilding.
func (s *Store) Ensure(ctx context.Context, name string, progress func(api.Event)) (Image, error) {
	if progress == nil {
		progress = func(api.Event) {}
	}
	img, err := s.Get(ctx, name)
	if err == nil || !errors.Is(err, api.ErrNotFound) || name != s.golden {
		return img, err
	}
	if s.builder == nil {
		return Image{}, fmt.Errorf("pull image %q: no image builder configured", name)
	}
	unlock, err := s.locks.LockNotify(ctx, name, func() {
		progress(api.Event{Type: api.EventProgress, Stage: StagePull, Message: "waiting for another pull of " + name})
	})
	if err != nil {
		return Image{}, fmt.Errorf("pull image %q: %w", name, err)
	}
	defer unlock()
	// A peer may have finished while we waited.
	if img, err := s.Get(ctx, name); err == nil || !errors.Is(err, api.ErrNotFound) {
		return img, err
	}
	start := time.Now()
	progress(api.Event{Type: api.EventProgress, Stage: StagePull, Message: "building " + name + " (a few minutes, once)"})
	dir := s.path(name)
	if err := s.builder.BuildGolden(ctx, name, progress); err != nil {
		// Logged, not joined: the caller's error keeps its code and hint.
		if derr := s.dropPartial(dir); derr != nil {
			s.log.Warn("image store: remove a failed build", "dir", dir, "err", derr)
		}
		return Image{}, fmt.Errorf("pull image %q: %w", name, err)
	}
	progress(api.Event{Type: api.EventProgress, Stage: StageRegister, Message: "kernel and image record"})
	img, err = s.register(ctx, name)
	if err != nil {
		if _, serr := os.Lstat(dir); serr == nil {
			// Unusable as it is: the next pull builds afresh.
			if derr := s.discard(dir); derr != nil {
				s.log.Warn("image store: remove an unusable build", "dir", dir, "err", derr)
			}
		}
		return Image{}, fmt.Errorf("pull image %q: %w", name, err)
	}
	s.log.Info("image pulled", "name", name, "kernel", img.Kernel, "took", time.Since(start).Round(time.Second))
	return img, nil
}

// dropPartial removes what a failed build left in dir, unless it is a
// complete build output (it has its manifest).
func (s *Store) dropPartial(dir string) error {
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if _, err := os.Lstat(filepath.Join(dir, ManifestFile)); err == nil {
		s.log.Info("image store: keeping a complete build output for the next pull", "dir", dir)
		return nil
	}
	return s.discard(dir)
}

// buildManifest is what register reads of the builder's manifest.json.
type buildManifest struct {
	Name          string `json:"name"`
	SpecDigest    string `json:"spec_digest"`
	KernelVersion string `json:"kernel_version"`
}

// register turns a build output into an image: kernel into the kernel
// store, image.json written last, then the build's kernel/ copy removed.
func (s *Store) register(ctx context.Context, name string) (Image, error) {
	dir := s.path(name)
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return Image{}, fmt.Errorf("the build left no manifest: %w", err)
	}
	var m buildManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return Image{}, fmt.Errorf("build manifest: %w", err)
	}
	if m.Name != name {
		return Image{}, fmt.Errorf("build manifest names image %q, want %q", m.Name, name)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, raw); err != nil {
		return Image{}, fmt.Errorf("build manifest: %w", err)
	}
	img := Image{Name: name, Created: time.Now().UTC().Truncate(time.Second), Manifest: compact.Bytes()}
	img.Source = "built by bangerd-root from Debian packages"
	if len(m.SpecDigest) >= 12 {
		img.Source += " (spec " + m.SpecDigest[:12] + ")"
	}
	for _, f := range []struct {
		name string
		size *int64
	}{{RootFSFile, &img.SizeBytes}, {WorkSeedFile, &img.WorkSeedBytes}} {
		fi, err := os.Lstat(filepath.Join(dir, f.name))
		if err != nil {
			return Image{}, fmt.Errorf("the build left no %s: %w", f.name, err)
		}
		if !fi.Mode().IsRegular() {
			return Image{}, fmt.Errorf("%s is not a regular file", filepath.Join(dir, f.name))
		}
		*f.size = fi.Size()
	}
	kdir := filepath.Join(dir, KernelDir)
	if img.Kernel, err = s.registerKernel(ctx, kdir); err != nil {
		return Image{}, fmt.Errorf("register kernel: %w", err)
	}
	rec, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return Image{}, err
	}
	if err := atomicfile.Write(filepath.Join(dir, RecordFile), append(rec, '\n'), 0o644); err != nil {
		return Image{}, err
	}
	if err := os.RemoveAll(kdir); err != nil {
		s.log.Warn("image store: remove the build's kernel copy", "path", kdir, "err", err)
	}
	return load(dir)
}

// registerKernel puts the kernel in kdir into the kernel store and returns
// its name: DefaultKernelName, or the kernel already there under that name
// when its vmlinux is the same, or DefaultKernelName-<sha256 prefix> when
// the name holds another kernel.
func (s *Store) registerKernel(ctx context.Context, kdir string) (string, error) {
	k, err := s.kernels.Adopt(ctx, DefaultKernelName, kdir)
	if err == nil {
		return k.Name, nil
	}
	if !errors.Is(err, api.ErrAlreadyExists) {
		return "", err
	}
	kfile, _, err := kernel.AdoptableKernel(kdir)
	if err != nil {
		return "", err
	}
	sum, err := kernel.VmlinuxDigest(ctx, kfile)
	if err != nil {
		return "", err
	}
	candidates := []string{DefaultKernelName, DefaultKernelName + "-" + sum[:12]}
	for _, n := range candidates {
		k, err := s.kernels.Get(ctx, n)
		switch {
		case err == nil && k.VmlinuxSHA256 == sum:
			return n, nil
		case err == nil:
			continue
		case errors.Is(err, api.ErrNotFound):
			k, err := s.kernels.Adopt(ctx, n, kdir)
			if err != nil {
				return "", err
			}
			return k.Name, nil
		default:
			return "", err
		}
	}
	return "", api.WithHint(fmt.Errorf("kernel names %s are taken by other kernels", candidates),
		"remove one of them (banger kernel rm NAME) and pull again")
}
