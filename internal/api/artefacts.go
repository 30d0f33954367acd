package api

import (
	"encoding/json"
	"time"
)

// Kernel is one kernel of the daemon's kernel store
// (GET /v1/kernels, GET /v1/kernels/{name}, the result of an import).
type Kernel struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Source says where the kernel came from (a .deb, a kernel file, an
	// image build).
	Source string `json:"source"`
	Dir    string `json:"dir"`
	// Vmlinux is the ELF kernel (Firecracker); Vmlinuz the bzImage (QEMU),
	// empty when the kernel was imported as ELF.
	Vmlinux       string `json:"vmlinux"`
	Vmlinuz       string `json:"vmlinuz,omitempty"`
	VmlinuxSHA256 string `json:"vmlinux_sha256"`
	VmlinuxSize   int64  `json:"vmlinux_size"`
	VmlinuzSize   int64  `json:"vmlinuz_size,omitempty"`
	ModulesSize   int64  `json:"modules_size,omitempty"`
	HasModules    bool   `json:"has_modules"`
	HasConfig     bool   `json:"has_config"`
	// MMIOCmdlineDevices is CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES.
	MMIOCmdlineDevices bool      `json:"mmio_cmdline_devices"`
	Created            time.Time `json:"created"`
	// UsedBy names what uses the kernel (VMs, images).
	UsedBy []string `json:"used_by,omitempty"`
}

// Image is one image of the daemon's image store
// (GET /v1/images, GET /v1/images/{name}, the result of a pull).
type Image struct {
	Name     string `json:"name"`
	Dir      string `json:"dir"`
	RootFS   string `json:"rootfs"`
	WorkSeed string `json:"work_seed"`
	// Kernel is the name of the image's kernel in the kernel store.
	Kernel        string    `json:"kernel"`
	SizeBytes     int64     `json:"size_bytes"`
	WorkSeedBytes int64     `json:"work_seed_bytes"`
	Created       time.Time `json:"created"`
	Source        string    `json:"source"`
	// Manifest is the builder's manifest.json, as written.
	Manifest json.RawMessage `json:"manifest,omitempty"`
	// UsedBy names the VMs using the image.
	UsedBy []string `json:"used_by,omitempty"`
}
