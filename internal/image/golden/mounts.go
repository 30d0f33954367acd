package golden

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mountsUnder lists the mount points in a /proc/self/mountinfo stream that
// are dir or below it, deepest first, so they can be unmounted in order.
func mountsUnder(mountinfo io.Reader, dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	var found []string
	sc := bufio.NewScanner(mountinfo)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		// ID parentID major:minor root mountpoint options ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			found = append(found, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	// A mount point listed twice (stacked mounts) must be unmounted twice.
	slices.SortStableFunc(found, func(a, b string) int {
		return strings.Count(b, "/") - strings.Count(a, "/")
	})
	return found, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for space, \011,
// \012, \134) in a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmounter detaches mounts; the real one is unix.Unmount, tests record.
type unmounter func(path string) error

func detach(path string) error {
	return unix.Unmount(path, unix.MNT_DETACH)
}

// unmountAll detaches every mount under dir, deepest first, and keeps going
// past failures so one stuck mount does not leave the others behind.
func unmountAll(dir string, readMountinfo func() (io.ReadCloser, error), unmount unmounter) error {
	list, err := listMounts(dir, readMountinfo)
	if err != nil {
		return err
	}
	var errs []error
	for _, mp := range list {
		if err := unmount(mp); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

func listMounts(dir string, readMountinfo func() (io.ReadCloser, error)) ([]string, error) {
	rc, err := readMountinfo()
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	defer rc.Close()
	return mountsUnder(rc, dir)
}

func procMountinfo() (io.ReadCloser, error) { return os.Open("/proc/self/mountinfo") }

// removeTree unmounts everything under dir and then removes it. It refuses to
// remove anything while a mount is still there: debootstrap mounts /proc and
// /sys (and may bind /dev) inside the root, and os.RemoveAll would follow
// them into the host.
func removeTree(dir string, readMountinfo func() (io.ReadCloser, error), unmount unmounter) error {
	if dir == "" {
		return nil
	}
	unmountErr := unmountAll(dir, readMountinfo, unmount)
	left, err := listMounts(dir, readMountinfo)
	if err != nil {
		return errors.Join(unmountErr, err)
	}
	if len(left) > 0 {
		return errors.Join(unmountErr, fmt.Errorf("remove %s: still mounted: %s", dir, strings.Join(left, ", ")))
	}
	if err := os.RemoveAll(dir); err != nil {
		return errors.Join(unmountErr, fmt.Errorf("remove %s: %w", dir, err))
	}
	return unmountErr
}
