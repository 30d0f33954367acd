package boot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// findDisk looks d up in a sysfs block directory (/sys/block) and returns
// its kernel name, or "" when it is not there (yet).
func findDisk(sysBlock string, d Disk) (string, error) {
	if d.Name != "" {
		if _, err := os.Stat(filepath.Join(sysBlock, d.Name)); err != nil {
			if os.IsNotExist(err) {
				return "", nil
			}
			return "", err
		}
		return d.Name, nil
	}
	names, err := filepath.Glob(filepath.Join(sysBlock, "vd*"))
	if err != nil {
		return "", err
	}
	found := ""
	for _, p := range names {
		raw, err := os.ReadFile(filepath.Join(p, "serial"))
		if err != nil {
			continue // a disk without the attribute has no serial
		}
		if strings.TrimRight(string(raw), "\x00 \n") != d.Serial {
			continue
		}
		if found != "" {
			return "", fmt.Errorf("disk %s: both %s and %s have that serial", d, found, filepath.Base(p))
		}
		found = filepath.Base(p)
	}
	return found, nil
}

// waitDisks waits until every disk is visible in sysBlock with its node in
// devDir, and returns their device paths in the order given. Disks appear
// asynchronously after virtio_blk probes them.
func waitDisks(ctx context.Context, sysBlock, devDir string, disks []Disk) ([]string, error) {
	paths := make([]string, len(disks))
	for {
		missing := ""
		for i, d := range disks {
			if paths[i] != "" {
				continue
			}
			name, err := findDisk(sysBlock, d)
			if err != nil {
				return nil, err
			}
			if name == "" {
				missing = d.String()
				continue
			}
			dev := filepath.Join(devDir, name)
			if _, err := os.Stat(dev); err != nil {
				missing = dev
				continue
			}
			paths[i] = dev
		}
		if missing == "" {
			return paths, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for disk %s: %w (present: %s)", missing, ctx.Err(), presentDisks(sysBlock))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// presentDisks describes the disks there are, for the error that says one
// is missing.
func presentDisks(sysBlock string) string {
	names, _ := filepath.Glob(filepath.Join(sysBlock, "vd*"))
	if len(names) == 0 {
		return "no virtio disks"
	}
	var out []string
	for _, p := range names {
		s := filepath.Base(p)
		if raw, err := os.ReadFile(filepath.Join(p, "serial")); err == nil {
			if serial := strings.TrimRight(string(raw), "\x00 \n"); serial != "" {
				s += " serial " + serial
			}
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}
