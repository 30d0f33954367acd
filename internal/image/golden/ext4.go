package golden

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
)

const mib = 1 << 20

// Sizing of the images. The root is read-only in the guest (an overlay sits
// on top), so its slack only has to absorb ext4 metadata; the work seed is
// grown per VM with resize2fs.
const (
	rootfsSlack  = 256 * mib
	seedMinimum  = 64 * mib
	seedSlack    = 32 * mib
	inodeReserve = 4096
)

// rootfsSize is content × 1.25 + 256 MiB, rounded up to a MiB.
func rootfsSize(used int64) int64 {
	return roundUpMiB(used + used/4 + rootfsSlack)
}

// seedSize is 64 MiB unless the content needs more (× 1.25 + 32 MiB).
func seedSize(used int64) int64 {
	return max(seedMinimum, roundUpMiB(used+used/4+seedSlack))
}

// rootfsInodes leaves a quarter spare over what the tree uses; mkfs's
// default ratio would waste space on inode tables of a read-only image.
func rootfsInodes(n int64) int64 {
	return n + n/4 + inodeReserve
}

func roundUpMiB(n int64) int64 {
	return (n + mib - 1) / mib * mib
}

// ext4Params are the mkfs.ext4 choices for one image. Changing how they are
// applied changes the output: bump builderVersion.
type ext4Params struct {
	label   string
	size    int64
	inodes  int64 // 0: one per 16 KiB
	journal bool
}

// makeExt4 creates img of p.size bytes holding the tree at dir. Run as root,
// mkfs copies ownership, modes, xattrs and hard links as they are.
func makeExt4(ctx context.Context, r runner, mkfs, dir, img string, p ext4Params) error {
	// A sparse file of the final size: mkfs then takes the size from it.
	f, err := os.OpenFile(img, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(p.size); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// 4 KiB blocks and one inode per 16 KiB whatever the size: mke2fs would
	// pick its "small" profile (1 KiB blocks, an inode per 4 KiB) for the work
	// seed, and resize2fs keeps both when the seed is grown to a real disk.
	argv := []string{mkfs, "-q", "-F", "-t", "ext4", "-L", p.label, "-b", "4096",
		"-m", "0", "-E", "root_owner=0:0,nodiscard"}
	if !p.journal {
		argv = append(argv, "-O", "^has_journal")
	}
	if p.inodes > 0 {
		argv = append(argv, "-N", strconv.FormatInt(p.inodes, 10))
	} else {
		argv = append(argv, "-i", "16384")
	}
	argv = append(argv, "-d", dir, img)
	return r.run(ctx, command{argv: argv})
}

// fsUsed is the number of bytes the filesystem in img has allocated, from
// dumpe2fs's superblock summary.
func fsUsed(ctx context.Context, r runner, dumpe2fs, img string) (int64, error) {
	out, err := r.output(ctx, command{argv: []string{dumpe2fs, "-h", img}})
	if err != nil {
		return 0, err
	}
	return parseSuperblockUsed(out)
}

func parseSuperblockUsed(out []byte) (int64, error) {
	vals := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch k = strings.TrimSpace(k); k {
		case "Block count", "Free blocks", "Block size":
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("dumpe2fs %s: %w", k, err)
			}
			vals[k] = n
		}
	}
	for _, k := range []string{"Block count", "Free blocks", "Block size"} {
		if _, ok := vals[k]; !ok {
			return 0, fmt.Errorf("dumpe2fs output has no %q", k)
		}
	}
	return (vals["Block count"] - vals["Free blocks"]) * vals["Block size"], nil
}
