package agent

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// CopyResult is what PUT /v1/files wrote.
type CopyResult struct {
	// Entries counts files, directories and links written.
	Entries int `json:"entries"`
	// Bytes counts regular file content.
	Bytes int64 `json:"bytes"`
}

// extractor writes a tar stream under one directory without ever following
// a symlink: each entry's parents are opened one component at a time with
// openat(O_NOFOLLOW|O_DIRECTORY), so a symlink planted by an earlier entry
// (or already in the guest) cannot redirect a later write outside.
type extractor struct {
	root  int
	chown bool
	dirs  []dirMeta
	res   CopyResult
}

// dirMeta is applied after every entry is written: creating children
// changes a directory's mtime, and a read-only mode would stop them.
type dirMeta struct {
	parts []string
	mode  uint32
	mtime time.Time
}

// extract writes the tar stream r under dir, creating dir if missing.
func extract(dir string, r io.Reader) (CopyResult, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return CopyResult{}, fmt.Errorf("create %s: %w", dir, err)
	}
	root, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return CopyResult{}, fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(root)
	x := &extractor{root: root, chown: os.Geteuid() == 0}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return x.res, badRequest("read tar: %v", err)
		}
		if err := x.entry(h, tr); err != nil {
			return x.res, fmt.Errorf("tar entry %q: %w", h.Name, err)
		}
	}
	// Deepest first, so a parent's mtime is set after its children's.
	for _, d := range slices.Backward(x.dirs) {
		if err := x.finishDir(d); err != nil {
			return x.res, err
		}
	}
	return x.res, nil
}

// splitName turns an entry name into path components inside the target,
// refusing anything that could name a path outside it.
func splitName(name string) ([]string, error) {
	if strings.HasPrefix(name, "/") {
		return nil, badRequest("absolute name")
	}
	var parts []string
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
		case "..":
			return nil, badRequest("'..' in name")
		default:
			parts = append(parts, p)
		}
	}
	return parts, nil
}

func (x *extractor) entry(h *tar.Header, r io.Reader) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	parts, err := splitName(h.Name)
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		// The target directory itself ("./"): it already exists and its
		// metadata belongs to the guest, not the archive.
		return nil
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeDir, tar.TypeSymlink, tar.TypeLink:
	default:
		return badRequest("unsupported entry type %q (only files, directories and links)", h.Typeflag)
	}
	parent, err := x.walk(parts[:len(parts)-1], true)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	base := parts[len(parts)-1]
	switch h.Typeflag {
	case tar.TypeDir:
		err = x.dir(parent, base, parts, h)
	case tar.TypeSymlink:
		err = x.symlink(parent, base, h)
	case tar.TypeLink:
		err = x.link(parent, base, h)
	default:
		err = x.file(parent, base, h, r)
	}
	if err == nil {
		x.res.Entries++
	}
	return err
}

// walk opens the directory named by parts below the root, refusing
// symlinks and non-directories, creating missing ones if create is set.
func (x *extractor) walk(parts []string, create bool) (int, error) {
	fd, err := unix.Dup(x.root)
	if err != nil {
		return -1, err
	}
	for i, p := range parts {
		next, err := unix.Openat(fd, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err = unix.Mkdirat(fd, p, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = unix.Openat(fd, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			}
		}
		unix.Close(fd)
		if err != nil {
			at := strings.Join(parts[:i+1], "/")
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				return -1, badRequest("%s is not a directory (symlinks are not followed)", at)
			}
			return -1, fmt.Errorf("open %s: %w", at, err)
		}
		fd = next
	}
	return fd, nil
}

// clear removes a non-directory at name so the entry replaces it rather
// than writing through it (a symlink, or a hard link shared elsewhere).
func clear(parent int, name string) error {
	err := unix.Unlinkat(parent, name, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(parent, name, unix.AT_REMOVEDIR)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("replace %s: %w", name, err)
	}
	return nil
}

func (x *extractor) dir(parent int, name string, parts []string, h *tar.Header) error {
	var st unix.Stat_t
	err := unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
	case err == nil:
		if err := clear(parent, name); err != nil {
			return err
		}
		fallthrough
	default:
		if err := unix.Mkdirat(parent, name, 0o700); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
	}
	if x.chown {
		if err := unix.Fchownat(parent, name, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	x.dirs = append(x.dirs, dirMeta{parts: parts, mode: uint32(h.Mode) & 0o7777, mtime: h.ModTime})
	return nil
}

func (x *extractor) finishDir(d dirMeta) error {
	fd, err := x.walk(d.parts, false)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	name := strings.Join(d.parts, "/")
	if err := unix.Fchmod(fd, d.mode); err != nil {
		return fmt.Errorf("chmod %s: %w", name, err)
	}
	ts := []unix.Timespec{unix.NsecToTimespec(d.mtime.UnixNano()), unix.NsecToTimespec(d.mtime.UnixNano())}
	if err := futimens(fd, ts); err != nil {
		return fmt.Errorf("set times of %s: %w", name, err)
	}
	return nil
}

func (x *extractor) file(parent int, name string, h *tar.Header, r io.Reader) error {
	if err := clear(parent, name); err != nil {
		return err
	}
	fd, err := unix.Openat(parent, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	n, err := io.Copy(f, r)
	x.res.Bytes += n
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	// chown before chmod: chown clears set-id bits.
	if x.chown {
		if err := f.Chown(h.Uid, h.Gid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := unix.Fchmod(fd, uint32(h.Mode)&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := futimens(fd, times(h)); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return f.Close()
}

func (x *extractor) symlink(parent int, name string, h *tar.Header) error {
	if h.Linkname == "" {
		return badRequest("symlink without a target")
	}
	if err := clear(parent, name); err != nil {
		return err
	}
	// The target is stored as given: nothing here ever follows it.
	if err := unix.Symlinkat(h.Linkname, parent, name); err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	if x.chown {
		if err := unix.Fchownat(parent, name, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := unix.UtimesNanoAt(parent, name, times(h), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

func (x *extractor) link(parent int, name string, h *tar.Header) error {
	src, err := splitName(h.Linkname)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", h.Linkname, err)
	}
	if len(src) == 0 {
		return badRequest("hard link to the target directory")
	}
	srcParent, err := x.walk(src[:len(src)-1], false)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", h.Linkname, err)
	}
	defer unix.Close(srcParent)
	srcName := src[len(src)-1]
	var st unix.Stat_t
	if err := unix.Fstatat(srcParent, srcName, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("hard link target %q: %w", h.Linkname, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return badRequest("hard link to directory %q", h.Linkname)
	}
	if err := clear(parent, name); err != nil {
		return err
	}
	// Flags 0: link the entry itself, never what a symlink points to.
	if err := unix.Linkat(srcParent, srcName, parent, name, 0); err != nil {
		return fmt.Errorf("hard link: %w", err)
	}
	return nil
}

// futimens sets the times of the open file fd (utimensat with a NULL
// path, which x/sys does not expose).
func futimens(fd int, ts []unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func times(h *tar.Header) []unix.Timespec {
	at := h.AccessTime
	if at.IsZero() {
		at = h.ModTime
	}
	return []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
}
