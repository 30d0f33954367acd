package golden

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Names inside a built image directory.
const (
	ManifestFile = "manifest.json"
	RootfsFile   = "rootfs.ext4"
	WorkSeedFile = "work-seed.ext4"
	KernelDir    = "kernel"
	// Inside KernelDir.
	KernelImage   = "vmlinuz"
	KernelConfig  = "config"
	KernelModules = "modules" // holds lib/modules/<version>/
)

// Manifest describes a built image; it is written last, so its presence
// marks a complete build.
type Manifest struct {
	Name         string            `json:"name"`
	Suite        string            `json:"suite"`
	SpecDigest   string            `json:"spec_digest"`
	BuildSeconds float64           `json:"build_seconds"`
	Stages       []StageTime       `json:"stages"`
	Sizes        Sizes             `json:"sizes"`
	Kernel       string            `json:"kernel_version"`
	Packages     map[string]string `json:"packages"` // name → Debian version
	Mise         MiseInfo          `json:"mise"`
	Created      time.Time         `json:"created"`
}

// StageTime is how long one build stage took.
type StageTime struct {
	Stage   string  `json:"stage"`
	Seconds float64 `json:"seconds"`
}

// Sizes are in bytes. Apparent sizes are the file lengths; used sizes are
// what the ext4 filesystem has allocated (the files are sparse).
type Sizes struct {
	Content          int64 `json:"content"` // the root tree before mkfs
	Rootfs           int64 `json:"rootfs"`
	RootfsUsed       int64 `json:"rootfs_used"`
	WorkSeed         int64 `json:"work_seed"`
	WorkSeedUsed     int64 `json:"work_seed_used"`
	KernelAndModules int64 `json:"kernel"`
}

// MiseInfo records the mise binary that went in.
type MiseInfo struct {
	Version       string `json:"version"`
	TarballSHA256 string `json:"tarball_sha256"`
	BinarySHA256  string `json:"binary_sha256"`
}

// ReadManifest loads the manifest of the image in dir.
func ReadManifest(dir string) (Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return Manifest{}, fmt.Errorf("read image manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("read image manifest %s: %w", dir, err)
	}
	return m, nil
}

func writeManifest(dir string, m Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, ManifestFile), 0o644, func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}
