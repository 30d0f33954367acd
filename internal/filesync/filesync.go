// Package filesync turns [[file_sync]] entries into a tar stream for the
// guest's /root, copying only what lies inside the owner's home.
//
// The rules, learned by the reference the hard way:
//   - An entry's host path must resolve, symlinks included, inside the home.
//     Symlinks on the way to it (the entry itself, or a directory above it)
//     are followed only when the result stays inside.
//   - Inside a synced directory nothing is followed: symlinks are skipped
//     with a warning and never stored (a link in ~/.aws pointing at another
//     credential directory would leak it), and so are sockets, pipes and
//     devices.
//   - Every read goes through an os.Root on the home, and each file or
//     directory opened is checked to be the one examined, so a symlink or
//     pipe swapped in during the walk cannot escape the home or hang it.
//
// Modes: a single-file entry gets its mode, or 0600; files of a directory
// entry get its mode, or keep their host permission bits. Directories keep
// their host permission bits with the owner's rwx added (the guest user
// must be able to write into them later); parent directories that only
// exist to hold an entry are 0700. Set-id and sticky bits are dropped. The
// first entry to emit a directory sets its mode. Everything is owned by
// uid 0 / gid 0, the guest user.
package filesync

import (
	"archive/tar"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/banger/banger/internal/config"
)

// GuestDir is the directory the stream's names are relative to.
const GuestDir = "/root"

// defaultFileMode is the reference's mode for a single file without one:
// synced files are typically credentials.
const defaultFileMode fs.FileMode = 0o600

// parentMode is the mode of directories made only to hold an entry.
const parentMode fs.FileMode = 0o700

// Options says what to copy.
type Options struct {
	// Home is the owner's home directory, absolute.
	Home    string
	Entries []config.FileSync
	// Warn receives one line per thing skipped; nil drops them.
	Warn func(string)
}

// Stats counts what the stream holds.
type Stats struct {
	Files   int   `json:"files"`
	Dirs    int   `json:"dirs"`
	Bytes   int64 `json:"bytes"`
	Skipped int   `json:"skipped"`
}

// source is one entry with its host path resolved inside the home.
type source struct {
	idx   int
	entry config.FileSync
	label string      // the host path as the user wrote it
	rel   string      // the resolved host path, relative to the real home
	guest string      // the guest path relative to GuestDir, "." for itself
	info  fs.FileInfo // what rel was when resolved
}

// Check resolves every entry without reading any file: what Build would
// refuse, it refuses with the same message.
func Check(opts Options) error {
	_, _, err := resolve(opts)
	return err
}

// Build writes the entries to w as a tar stream whose names are relative to
// GuestDir, for agent.Client.CopyTo(ctx, r, filesync.GuestDir). Every entry
// is resolved before the first byte is written, so a refused entry costs
// nothing in the guest. On error the stream is left unfinished: close the
// pipe with the error so the reader fails too.
func Build(ctx context.Context, opts Options, w io.Writer) (Stats, error) {
	srcs, home, err := resolve(opts)
	if err != nil {
		return Stats{}, err
	}
	root, err := os.OpenRoot(home)
	if err != nil {
		return Stats{}, fmt.Errorf("file_sync: open home: %w", err)
	}
	defer root.Close()
	b := &builder{
		ctx:   ctx,
		tw:    tar.NewWriter(w),
		warn:  opts.Warn,
		names: names{},
		now:   time.Now(),
	}
	if b.warn == nil {
		b.warn = func(string) {}
	}
	for _, s := range srcs {
		if err := b.source(root, s); err != nil {
			return b.stats, err
		}
	}
	if err := b.tw.Close(); err != nil {
		return b.stats, fmt.Errorf("file_sync: %w", err)
	}
	return b.stats, nil
}

// resolve checks every entry and returns them with the real home.
func resolve(opts Options) ([]source, string, error) {
	if !filepath.IsAbs(opts.Home) {
		return nil, "", fmt.Errorf("file_sync: home %q is not an absolute path", opts.Home)
	}
	home, err := filepath.EvalSymlinks(opts.Home)
	if err != nil {
		return nil, "", fmt.Errorf("file_sync: home: %w", err)
	}
	srcs := make([]source, 0, len(opts.Entries))
	// Clashes between entries are found here, before anything is sent;
	// only those with files found inside a directory wait for the walk.
	claimed := names{}
	for i, e := range opts.Entries {
		s, err := resolveEntry(opts.Home, home, i, e)
		if err == nil {
			err = claimed.claimEntry(s)
		}
		if err != nil {
			return nil, "", err
		}
		srcs = append(srcs, s)
	}
	return srcs, home, nil
}

func resolveEntry(home, realHome string, i int, e config.FileSync) (source, error) {
	s := source{idx: i, entry: e, label: cmp.Or(e.Host, e.HostPath)}
	fail := func(format string, a ...any) (source, error) {
		return source{}, fmt.Errorf("file_sync[%d]: %s", i, fmt.Sprintf(format, a...))
	}
	guest, err := guestRel(cmp.Or(e.GuestPath, e.Guest))
	if err != nil {
		return fail("%v", err)
	}
	s.guest = guest

	host := e.HostPath
	if host == "" {
		if rest, ok := strings.CutPrefix(e.Host, "~/"); ok {
			host = filepath.Join(home, rest)
		} else {
			host = filepath.Clean(e.Host)
		}
	}
	if !filepath.IsAbs(host) {
		return fail("host path %q must be absolute or start with ~/", s.label)
	}
	if _, err := os.Lstat(host); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fail("%s does not exist", s.label)
		}
		return fail("%v", err)
	}
	real, err := filepath.EvalSymlinks(host)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fail("%s is a broken symlink", s.label)
		}
		return fail("%v", err)
	}
	if !inside(real, realHome) {
		if real == host {
			return fail("%s is outside your home; banger copies only files inside %s", s.label, home)
		}
		return fail("%s links to %s, outside your home; banger copies only files inside %s", s.label, real, home)
	}
	s.rel, err = filepath.Rel(realHome, real)
	if err != nil {
		return fail("%v", err)
	}
	if s.info, err = os.Lstat(real); err != nil {
		return fail("%v", err)
	}
	switch {
	case s.info.IsDir():
	case s.info.Mode().IsRegular():
		if s.guest == "." {
			return fail("guest path %s is %s itself; a file needs a name there", cmp.Or(e.Guest, e.GuestPath), GuestDir)
		}
	default:
		return fail("%s is %s; banger copies only files and directories", s.label, kind(s.info.Mode()))
	}
	return s, nil
}

// guestRel turns ~/... or /root/... into a name relative to GuestDir.
func guestRel(g string) (string, error) {
	if rest, ok := strings.CutPrefix(g, "~/"); ok {
		g = GuestDir + "/" + rest
	}
	for _, part := range strings.Split(g, "/") {
		if part == ".." {
			return "", fmt.Errorf("guest path %q must not contain \"..\"", g)
		}
	}
	g = path.Clean(g)
	if g == GuestDir {
		return ".", nil
	}
	rest, ok := strings.CutPrefix(g, GuestDir+"/")
	if !ok {
		return "", fmt.Errorf("guest path %q must start with ~/ or %s/", g, GuestDir)
	}
	return rest, nil
}

func inside(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+string(filepath.Separator)) || dir == "/"
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}

// names remembers what the stream holds under each guest name, and which
// entry put it there.
type names map[string]emitted

type emitted struct {
	dir bool
	idx int
}

// claim records name for entry idx. It reports a directory already there,
// and refuses a file and a directory taking each other's place (the guest
// could not replace a non-empty directory); a file may replace a file.
func (n names) claim(name string, dir bool, idx int) (bool, error) {
	prev, ok := n[name]
	switch {
	case !ok || !prev.dir && !dir:
		n[name] = emitted{dir: dir, idx: idx}
		return false, nil
	case prev.dir && dir:
		return true, nil
	}
	what := map[bool]string{true: "a directory", false: "a file"}
	return false, fmt.Errorf("file_sync[%d]: ~/%s is %s from file_sync[%d] and %s here; give them different guest paths",
		idx, name, what[prev.dir], prev.idx, what[dir])
}

// claimEntry claims the guest path of s and its parents.
func (n names) claimEntry(s source) error {
	if s.guest == "." {
		return nil
	}
	parts := strings.Split(s.guest, "/")
	for i := 1; i < len(parts); i++ {
		if _, err := n.claim(strings.Join(parts[:i], "/"), true, s.idx); err != nil {
			return err
		}
	}
	_, err := n.claim(s.guest, s.info.IsDir(), s.idx)
	return err
}

type builder struct {
	ctx   context.Context
	tw    *tar.Writer
	warn  func(string)
	names names
	now   time.Time
	stats Stats
}

func (b *builder) source(root *os.Root, s source) error {
	if err := b.parents(s); err != nil {
		return err
	}
	changed := fmt.Errorf("file_sync[%d]: %s changed while being copied; try again", s.idx, s.label)
	if s.info.IsDir() {
		sub, err := root.OpenRoot(s.rel)
		if err != nil {
			return fmt.Errorf("file_sync[%d]: %w", s.idx, err)
		}
		defer sub.Close()
		fi, err := sub.Stat(".")
		if err != nil {
			return fmt.Errorf("file_sync[%d]: %w", s.idx, err)
		}
		if !os.SameFile(fi, s.info) {
			return changed
		}
		return b.dir(sub, s, ".", fi)
	}
	f, err := root.OpenFile(s.rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("file_sync[%d]: %w", s.idx, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("file_sync[%d]: %w", s.idx, err)
	}
	if !os.SameFile(fi, s.info) || !fi.Mode().IsRegular() {
		return changed
	}
	mode := defaultFileMode
	if s.entry.ModeSet {
		mode = s.entry.Mode
	}
	return b.file(s, s.guest, s.label, f, fi, mode)
}

// parents emits the directories above the entry's guest path.
func (b *builder) parents(s source) error {
	if s.guest == "." {
		return nil
	}
	parts := strings.Split(s.guest, "/")
	for i := 1; i < len(parts); i++ {
		name := strings.Join(parts[:i], "/")
		if err := b.header(s, name, true, &tar.Header{
			Typeflag: tar.TypeDir,
			Mode:     int64(parentMode),
			ModTime:  b.now,
		}); err != nil {
			return err
		}
	}
	return nil
}

// header writes h under name unless a directory of that name was already
// written.
func (b *builder) header(s source, name string, dir bool, h *tar.Header) error {
	if seen, err := b.names.claim(name, dir, s.idx); err != nil || seen {
		return err
	}
	h.Name = name
	if dir {
		h.Name += "/"
		b.stats.Dirs++
	}
	// Numeric ids only: the guest user is root.
	h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
	if err := b.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("file_sync[%d]: %w", s.idx, err)
	}
	return nil
}

// dir writes the directory d (named rel inside the entry, fi its info) and
// everything below it, following nothing.
func (b *builder) dir(d *os.Root, s source, rel string, fi fs.FileInfo) error {
	name := path.Join(s.guest, rel)
	if name != "." {
		if err := b.header(s, name, true, &tar.Header{
			Typeflag: tar.TypeDir,
			Mode:     int64(fi.Mode().Perm() | 0o700),
			ModTime:  fi.ModTime(),
		}); err != nil {
			return err
		}
	}
	f, err := d.Open(".")
	if err != nil {
		return fmt.Errorf("file_sync[%d]: %w", s.idx, err)
	}
	ents, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("file_sync[%d]: read %s: %w", s.idx, display(s, rel), err)
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	for _, e := range ents {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		if err := b.child(d, s, path.Join(rel, e.Name()), e.Name()); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) child(d *os.Root, s source, rel, base string) error {
	skip := func(why string) error {
		b.stats.Skipped++
		b.warn(fmt.Sprintf("file_sync[%d]: skipped %s: %s", s.idx, display(s, rel), why))
		return nil
	}
	lfi, err := d.Lstat(base)
	if err != nil {
		return fmt.Errorf("file_sync[%d]: %w", s.idx, err)
	}
	switch m := lfi.Mode(); {
	case m&fs.ModeSymlink != 0:
		return skip("a symlink (links inside a synced directory are never followed)")
	case m.IsDir():
		sub, err := d.OpenRoot(base)
		if err != nil {
			return fmt.Errorf("file_sync[%d]: %w", s.idx, err)
		}
		defer sub.Close()
		fi, err := sub.Stat(".")
		if err != nil {
			return fmt.Errorf("file_sync[%d]: %w", s.idx, err)
		}
		if !os.SameFile(fi, lfi) {
			return skip("it changed while being copied")
		}
		return b.dir(sub, s, rel, fi)
	case m.IsRegular():
		// O_NONBLOCK: a pipe swapped in after the Lstat must not hang the
		// open; the SameFile check then skips it.
		f, err := d.OpenFile(base, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("file_sync[%d]: %w", s.idx, err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return fmt.Errorf("file_sync[%d]: %w", s.idx, err)
		}
		if !os.SameFile(fi, lfi) || !fi.Mode().IsRegular() {
			return skip("it changed while being copied")
		}
		mode := fi.Mode().Perm()
		if s.entry.ModeSet {
			mode = s.entry.Mode
		}
		return b.file(s, path.Join(s.guest, rel), display(s, rel), f, fi, mode)
	default:
		return skip(kind(lfi.Mode()) + " (only files and directories are copied)")
	}
}

func (b *builder) file(s source, name, label string, r io.Reader, fi fs.FileInfo, mode fs.FileMode) error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	if err := b.header(s, name, false, &tar.Header{
		Typeflag: tar.TypeReg,
		Mode:     int64(mode.Perm()),
		Size:     fi.Size(),
		ModTime:  fi.ModTime(),
	}); err != nil {
		return err
	}
	// The size in the header is the size at open: a file that grows is cut
	// there, one that shrinks cannot be completed.
	n, err := io.Copy(b.tw, io.LimitReader(r, fi.Size()))
	b.stats.Bytes += n
	if err != nil {
		return fmt.Errorf("file_sync[%d]: read %s: %w", s.idx, label, err)
	}
	if n < fi.Size() {
		return fmt.Errorf("file_sync[%d]: %s shrank while being copied; try again", s.idx, label)
	}
	b.stats.Files++
	return nil
}

// display names a path inside an entry the way the user wrote the entry.
func display(s source, rel string) string {
	if rel == "." {
		return s.label
	}
	return strings.TrimSuffix(s.label, "/") + "/" + rel
}
