package golden

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestSizes(t *testing.T) {
	tests := []struct {
		used, rootfs, seed int64
	}{
		{0, 256 * mib, 64 * mib},
		{1, 257 * mib, 64 * mib},
		{100 * mib, 381 * mib, 157 * mib},  // 125 + 256; 125 + 32
		{773103616, 1178 * mib, 954 * mib}, // the real build: 737.3 MiB × 1.25 = 921.6
		{25 * mib, 288 * mib, 64 * mib},    // 31.25 + 32 rounds up to 64 anyway
		{40 * mib, 306 * mib, 82 * mib},    // 50 + 32 = 82
		{4*mib + 1, 262 * mib, 64 * mib},
	}
	for _, tt := range tests {
		if got := rootfsSize(tt.used); got != tt.rootfs {
			t.Errorf("rootfsSize(%d) = %d MiB (%d), want %d MiB", tt.used, got/mib, got, tt.rootfs/mib)
		}
		if got := seedSize(tt.used); got != tt.seed {
			t.Errorf("seedSize(%d) = %d MiB, want %d MiB", tt.used, got/mib, tt.seed/mib)
		}
		if got := rootfsSize(tt.used); got%mib != 0 || got < tt.used+tt.used/4+rootfsSlack {
			t.Errorf("rootfsSize(%d) = %d: not a MiB multiple above content × 1.25 + 256 MiB", tt.used, got)
		}
	}
	if got := rootfsInodes(40000); got != 54096 {
		t.Errorf("rootfsInodes(40000) = %d, want 54096", got)
	}
}

func TestParseSuperblockUsed(t *testing.T) {
	out := []byte("Filesystem volume name:   banger-root\nBlock count:              301568\nFree blocks:              112334\nBlock size:               4096\n")
	got, err := parseSuperblockUsed(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(301568-112334) * 4096; got != want {
		t.Errorf("used = %d, want %d", got, want)
	}
	if _, err := parseSuperblockUsed([]byte("Block count: 1\n")); err == nil {
		t.Error("accepted output without free blocks")
	}
}

// TestMakeExt4 runs the real mkfs.ext4 over a small tree.
func TestMakeExt4(t *testing.T) {
	mkfs, err1 := lookTool("mkfs.ext4")
	dumpe2fs, err2 := lookTool("dumpe2fs")
	if err1 != nil || err2 != nil {
		if os.Getenv("BANGER_E2E") == "1" {
			t.Fatalf("BANGER_E2E=1: e2fsprogs missing: %v %v", err1, err2)
		}
		t.Skip("needs e2fsprogs (mkfs.ext4, dumpe2fs, debugfs)")
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	mustWrite(t, filepath.Join(tree, "etc", "hostname"), "banger\n")
	if err := os.Link(filepath.Join(tree, "etc", "hostname"), filepath.Join(tree, "etc", "hostname.link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(tree, "name")); err != nil {
		t.Fatal(err)
	}
	u, err := diskUsage(tree)
	if err != nil {
		t.Fatal(err)
	}
	if u.Inodes != 4 { // tree, etc, hostname (twice linked), name
		t.Errorf("inodes = %d, want 4 (hard links once)", u.Inodes)
	}
	img := filepath.Join(dir, "img.ext4")
	r := runner{}
	p := ext4Params{label: "banger-test", size: rootfsSize(u.Bytes), inodes: rootfsInodes(u.Inodes)}
	if err := makeExt4(t.Context(), r, mkfs, tree, img, p); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(img)
	if err != nil || fi.Size() != p.size {
		t.Fatalf("image size %v, want %d (%v)", fi, p.size, err)
	}
	if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
		t.Errorf("e2fsck: %v\n%s", err, out)
	}
	out, err := exec.Command("debugfs", "-R", "cat /etc/hostname.link", img).Output()
	if err != nil || string(out) != "banger\n" {
		t.Errorf("hostname.link = %q, %v", out, err)
	}
	out, _ = exec.Command("dumpe2fs", "-h", img).Output()
	if !strings.Contains(string(out), "banger-test") || strings.Contains(string(out), "has_journal") ||
		!regexp.MustCompile(`Block size:\s+4096\n`).Match(out) {
		t.Errorf("superblock: want label banger-test, 4 KiB blocks and no journal:\n%s", out)
	}
	used, err := fsUsed(t.Context(), r, dumpe2fs, img)
	if err != nil || used <= 0 || used > p.size {
		t.Errorf("fsUsed = %d, %v", used, err)
	}
	// An existing file is never overwritten.
	if err := makeExt4(t.Context(), r, mkfs, tree, img, p); err == nil {
		t.Error("makeExt4 overwrote an existing image")
	}
}
