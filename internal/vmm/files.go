package vmm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"time"

	"github.com/banger/banger/internal/command"
)

// InputsExist names a missing kernel, initrd or disk before the VMM does it
// less clearly.
func InputsExist(spec Spec) error {
	paths := []string{spec.Kernel}
	if spec.Initrd != "" {
		paths = append(paths, spec.Initrd)
	}
	for _, d := range spec.Disks {
		paths = append(paths, d.Path)
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return fmt.Errorf("%s is a directory", p)
		}
	}
	return nil
}

// ClearSocket removes a control socket (or, under a jailer, the link to
// one) left by an earlier run, so that waiting for the VMM's socket cannot
// find the old one. A socket that still answers belongs to a running VMM:
// that is refused.
func ClearSocket(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if t := fi.Mode().Type(); t != fs.ModeSocket && t != fs.ModeSymlink {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	if c, err := d.DialContext(dctx, "unix", path); err == nil {
		c.Close()
		return fmt.Errorf("%s is in use: another VMM is running in this run dir", path)
	}
	return os.Remove(path)
}

// LogTail is the end of a VMM's own log, for an error message.
func LogTail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return command.Tail(b, lines)
}
