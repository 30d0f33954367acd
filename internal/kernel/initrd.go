package kernel

import (
	"bufio"
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
	"sync"
	"syscall"
	"time"
)

// initrdFormat names the layout of the cache key below; bump it when the
// key's inputs change meaning.
const initrdFormat = "initrd/1"

// Initramfs returns the path of k's initramfs with the agent at agentBinary
// as /init: initrd-<key>.img in the kernel's directory, where key is 16 hex
// digits of a sha256 over the kernel, the guest module list, the agent's
// content and the store's InitramfsTag. A cached file is returned at the
// cost of a stat of the agent and of the file; otherwise it is built once
// (concurrent callers wait for the first), written atomically, and older
// initrd-*.img of the kernel are removed.
func (s *Store) Initramfs(ctx context.Context, k Kernel, agentBinary string) (string, error) {
	if k.Dir == "" || filepath.Dir(k.Dir) != s.dir || k.Name != filepath.Base(k.Dir) {
		return "", fmt.Errorf("initramfs of kernel %q: not a kernel of this store (dir %q)", k.Name, k.Dir)
	}
	agentSum, err := s.agents.sum(agentBinary)
	if err != nil {
		return "", fmt.Errorf("initramfs of kernel %q: agent: %w", k.Name, err)
	}
	key, err := initrdKey(k, agentSum, s.initTag)
	if err != nil {
		return "", err
	}
	final := filepath.Join(k.Dir, "initrd-"+key+".img")
	if fi, err := os.Lstat(final); err == nil && fi.Mode().IsRegular() {
		return final, nil
	}
	if s.buildInit == nil {
		return "", fmt.Errorf("initramfs of kernel %q: no initramfs builder configured", k.Name)
	}
	unlock, err := s.locks.Lock(ctx, k.Name)
	if err != nil {
		return "", fmt.Errorf("initramfs of kernel %q: %w", k.Name, err)
	}
	defer unlock()
	// Built by whoever held the lock before us?
	if fi, err := os.Lstat(final); err == nil && fi.Mode().IsRegular() {
		return final, nil
	}
	if _, err := os.Lstat(filepath.Join(k.Dir, RecordFile)); err != nil {
		return "", notFound(k.Name) // removed meanwhile
	}
	start := time.Now()
	if err := s.writeInitrd(ctx, k, agentBinary, final); err != nil {
		return "", fmt.Errorf("initramfs of kernel %q: %w", k.Name, err)
	}
	s.log.Info("initramfs built", "kernel", k.Name, "path", final, "took", time.Since(start).Round(time.Millisecond))
	old, _ := filepath.Glob(filepath.Join(k.Dir, "initrd-*.img"))
	for _, p := range old {
		if p == final {
			continue
		}
		// A VM booting from it has it open already or holds the new path.
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("kernel store: remove old initramfs", "path", p, "err", err)
		}
	}
	return final, nil
}

func initrdKey(k Kernel, agentSum, tag string) (string, error) {
	in := struct {
		Format, Name, Version, Vmlinux, Agent, Tag string
		Created                                    time.Time
		HasModules                                 bool
		Modules                                    []string
	}{initrdFormat, k.Name, k.Version, k.VmlinuxSHA256, agentSum, tag, k.Created, k.HasModules, GuestModules()}
	b, err := json.Marshal(in)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), nil
}

func (s *Store) writeInitrd(ctx context.Context, k Kernel, agentBinary, final string) (err error) {
	f, err := os.CreateTemp(k.Dir, initrdTempPrefix+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			if rerr := os.Remove(f.Name()); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := s.buildInit(ctx, k, agentBinary, w); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return err
	}
	return syncDir(k.Dir)
}

const initrdTempPrefix = ".initrd-tmp-"

// sweepInitrdTemps removes initramfs files a crash left half-written.
func (s *Store) sweepInitrdTemps(dir string) {
	matches, _ := filepath.Glob(filepath.Join(dir, initrdTempPrefix+"*"))
	for _, p := range matches {
		if err := os.Remove(p); err != nil {
			s.log.Warn("kernel store: remove stale initramfs", "path", p, "err", err)
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// agentSums caches the sha256 of agent binaries for the life of the
// process, keyed by what a replacement would change (a new file has a new
// inode or mtime), so a cached initramfs costs a stat rather than a hash.
type agentSums struct {
	mu   sync.Mutex
	sums map[agentID]string
}

type agentID struct {
	path       string
	dev, ino   uint64
	size, nsec int64
}

func (a *agentSums) sum(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", abs)
	}
	id := agentID{path: abs, size: fi.Size(), nsec: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), st.Ino
	}
	a.mu.Lock()
	sum, ok := a.sums[id]
	a.mu.Unlock()
	if ok {
		return sum, nil
	}
	f, err := os.Open(abs)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", abs, err)
	}
	sum = hex.EncodeToString(h.Sum(nil))
	a.mu.Lock()
	if a.sums == nil {
		a.sums = map[agentID]string{}
	}
	// Older versions of the same path will not be asked for again.
	for k := range a.sums {
		if k.path == abs {
			delete(a.sums, k)
		}
	}
	a.sums[id] = sum
	a.mu.Unlock()
	return sum, nil
}
