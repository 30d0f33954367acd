package sandbox

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/banger/banger/internal/command"
)

// Disk file names inside a VM's directory.
const (
	layerDisk  = "layer.ext4"  // overlay upper/work and Docker's data
	workDisk   = "work.ext4"   // mounted on /root
	consoleLog = "console.log" // the serial console
)

// Serials the guest finds its disks by (boot.Params).
const (
	serialImage = "banger-image"
	serialLayer = "banger-layer"
	serialWork  = "banger-work"
)

// makeLayer creates the VM's writable layer: a sparse ext4 file that costs
// nothing until the guest writes. The image itself is never copied.
func makeLayer(ctx context.Context, path string, size int64) error {
	if err := sparseFile(path, size); err != nil {
		return err
	}
	return command.Run(ctx, "mkfs.ext4", "-q", "-F", "-L", "banger-layer", "-m", "0",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0", path)
}

// makeWorkDisk copies the image's work seed (a small ext4 of the image's
// /root) and grows it to size, so every VM starts with the image's /root.
func makeWorkDisk(ctx context.Context, seed, path string, size int64) error {
	if err := copySparse(seed, path); err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() > size {
		return fmt.Errorf("disk size %d bytes is smaller than the image's /root (%d bytes)", size, fi.Size())
	}
	// resize2fs insists on a freshly checked filesystem.
	if _, err := command.Output(ctx, "e2fsck", "-fp", path); err != nil {
		return err
	}
	return command.Run(ctx, "resize2fs", "-f", path, strconv.FormatInt(size/1024, 10)+"K")
}

func sparseFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// copySparse copies src to a new file dst, leaving holes where src has
// runs of zeros, so a mostly empty seed stays cheap.
func copySparse(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, rerr := io.ReadFull(in, buf)
		if n > 0 {
			chunk := buf[:n]
			if !allZero(chunk) {
				if _, err := out.WriteAt(chunk, off); err != nil {
					out.Close()
					return err
				}
			}
			off += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			out.Close()
			return rerr
		}
	}
	if err := out.Truncate(off); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
