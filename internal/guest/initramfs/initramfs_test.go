package initramfs

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
	"github.com/google/go-cmp/cmp"

	"github.com/banger/banger/internal/kernel"
)

const version = "6.1.0-99-test"

// testKernel lays out a kernel directory by hand (the kernel package's
// importers are tested there) with a modules tree whose modules.dep
// mirrors Debian's cloud kernel.
func testKernel(t *testing.T) kernel.Kernel {
	t.Helper()
	k := kernel.Kernel{Dir: t.TempDir(), Name: "test", Version: version, HasModules: true}
	md := k.ModulesDir()
	dep := map[string]string{
		"kernel/drivers/virtio/virtio_ring.ko":                      "",
		"kernel/drivers/virtio/virtio.ko":                           "kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio_pci_legacy_dev.ko":            "",
		"kernel/drivers/virtio/virtio_pci_modern_dev.ko":            "",
		"kernel/drivers/virtio/virtio_pci.ko":                       "kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko",
		"kernel/drivers/virtio/virtio_mmio.ko":                      "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/block/virtio_blk.ko":                        "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/net/core/failover.ko":                               "",
		"kernel/drivers/net/net_failover.ko":                        "kernel/net/core/failover.ko",
		"kernel/drivers/net/virtio_net.ko.gz":                       "kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko kernel/drivers/net/net_failover.ko",
		"kernel/drivers/char/virtio_console.ko":                     "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
		"kernel/net/vmw_vsock/vsock.ko":                             "",
		"kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko": "kernel/net/vmw_vsock/vsock.ko",
		"kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko":        "kernel/drivers/virtio/virtio.ko kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko kernel/drivers/virtio/virtio_ring.ko kernel/net/vmw_vsock/vsock.ko",
		"kernel/fs/overlayfs/overlay.ko":                            "",
		"kernel/drivers/net/tun.ko":                                 "",
	}
	var depFile strings.Builder
	for p, d := range dep {
		fmt.Fprintf(&depFile, "%s: %s\n", p, d)
		body := []byte("\x7fELF module " + kernel.ModuleName(p))
		if strings.HasSuffix(p, ".gz") {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(body)
			zw.Close()
			body = b.Bytes()
		}
		write(t, filepath.Join(md, p), body)
	}
	write(t, filepath.Join(md, "modules.dep"), []byte(depFile.String()))
	write(t, filepath.Join(md, "modules.builtin"), []byte("kernel/fs/ext4/ext4.ko\n"))
	return k
}

func write(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// testBinary is a minimal x86_64 ELF executable; dynamic ones name an
// interpreter as dynamically linked programs do.
func testBinary(t *testing.T, dynamic bool) []byte {
	t.Helper()
	progs := []elf.Prog64{{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Vaddr: 0x400000, Filesz: 64, Memsz: 64}}
	if dynamic {
		progs = append(progs, elf.Prog64{Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R), Filesz: 28, Memsz: 28})
	}
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: 1, Entry: 0x400000,
		Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: uint16(len(progs)), Shentsize: 64,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, h)
	binary.Write(&b, binary.LittleEndian, progs)
	b.WriteString("/lib64/ld-linux-x86-64.so.2\x00")
	return b.Bytes()
}

type member struct {
	Mode string
	Data string
}

// readArchive decompresses and reads an initramfs with an independent cpio
// reader.
func readArchive(t *testing.T, data []byte) ([]string, map[string]member) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	r := cpio.NewReader(zr)
	var names []string
	members := map[string]member{}
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		members[h.Name] = member{Mode: fmt.Sprintf("%o", uint32(h.Mode)), Data: string(body)}
	}
	return names, members
}

func TestBuild(t *testing.T) {
	k := testKernel(t)
	init := testBinary(t, false)
	var out bytes.Buffer
	err := Build(t.Context(), Options{
		Kernel: k,
		Init:   init,
		Extra:  []File{{Path: "/etc/banger/extra.conf", Mode: 0o600, Data: []byte("x=1\n")}},
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	names, members := readArchive(t, out.Bytes())
	order := []string{
		"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
		"virtio_mmio", "virtio_blk", "failover", "net_failover", "virtio_net", "virtio_console",
		"vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport", "overlay",
	}
	wantNames := []string{"dev", "dev/console", "etc", "etc/banger", "etc/banger/extra.conf", "etc/banger/modules", "init", "lib", "lib/modules", "lib/modules/" + version}
	var mods []string
	for _, m := range order {
		mods = append(mods, "lib/modules/"+version+"/"+m+".ko")
	}
	slices.Sort(mods)
	wantNames = append(wantNames, mods...)
	wantNames = append(wantNames, "proc", "run", "sys", "tmp")
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("archive members (-want +got):\n%s", diff)
	}
	if got := members["etc/banger/modules"].Data; got != strings.Join(order, "\n")+"\n" {
		t.Errorf("module list:\n%s\nwant:\n%s", got, strings.Join(order, "\n"))
	}
	checks := map[string]member{
		"init":                  {Mode: "100755", Data: string(init)},
		"dev/console":           {Mode: "20600"},
		"dev":                   {Mode: "40755"},
		"etc/banger/extra.conf": {Mode: "100600", Data: "x=1\n"},
		// Compressed modules are packed decompressed.
		"lib/modules/" + version + "/virtio_net.ko": {Mode: "100644", Data: "\x7fELF module virtio_net"},
	}
	for name, want := range checks {
		if diff := cmp.Diff(want, members[name]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}

	// The same inputs give the same bytes.
	var again bytes.Buffer
	if err := Build(t.Context(), Options{Kernel: k, Init: init, Extra: []File{{Path: "/etc/banger/extra.conf", Mode: 0o600, Data: []byte("x=1\n")}}}, &again); err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(out.Bytes()) != sha256.Sum256(again.Bytes()) {
		t.Error("two builds from the same inputs differ")
	}
}

func TestBuildConsoleDevice(t *testing.T) {
	// cavaliergopher/cpio does not expose rdev; read the raw header.
	var out bytes.Buffer
	if err := Build(t.Context(), Options{Init: testBinary(t, false)}, &out); err != nil {
		t.Fatal(err)
	}
	zr, _ := gzip.NewReader(&out)
	raw, _ := io.ReadAll(zr)
	i := bytes.Index(raw, []byte("dev/console\x00"))
	if i < 110 {
		t.Fatal("no dev/console member")
	}
	hdr := string(raw[i-110 : i])
	if got := hdr[78:94]; got != "0000000500000001" {
		t.Errorf("dev/console rdev fields %q, want major 5 minor 1", got)
	}
}

func TestBuildOptions(t *testing.T) {
	k := testKernel(t)
	initFile := filepath.Join(t.TempDir(), "banger-agent")
	write(t, initFile, testBinary(t, false))
	static := testBinary(t, false)
	tests := []struct {
		name    string
		opts    Options
		modules string // module list, when no error
		err     string
	}{
		{name: "init from path, chosen modules", opts: Options{Kernel: k, InitPath: initFile, Modules: []string{"tun", "ext4", "virtio-blk"}}, modules: "tun\nvirtio_ring\nvirtio\nvirtio_blk\n"},
		{name: "kernel without modules", opts: Options{Kernel: kernel.Kernel{Version: version}, Init: static}, modules: ""},
		{name: "missing module", opts: Options{Kernel: k, Init: static, Modules: []string{"nvme"}}, err: `module "nvme": not in`},
		{name: "no init", opts: Options{Kernel: k}, err: "no init binary"},
		{name: "init not ELF", opts: Options{Kernel: k, Init: []byte("#!/bin/sh\n")}, err: "not an ELF"},
		{name: "init dynamically linked", opts: Options{Kernel: k, Init: testBinary(t, true)}, err: "dynamically linked"},
		{name: "extra relative", opts: Options{Init: static, Extra: []File{{Path: "etc/x"}}}, err: "clean absolute path"},
		{name: "extra traversal", opts: Options{Init: static, Extra: []File{{Path: "/etc/../init"}}}, err: "clean absolute path"},
		{name: "extra replaces init", opts: Options{Init: static, Extra: []File{{Path: "/init"}}}, err: "/init is added twice"},
		{name: "extra under a file", opts: Options{Init: static, Extra: []File{{Path: "/init/x"}}}, err: "/init is a file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Build(t.Context(), tt.opts, &out)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_, members := readArchive(t, out.Bytes())
			if got := members["etc/banger/modules"].Data; got != tt.modules {
				t.Errorf("module list %q, want %q", got, tt.modules)
			}
		})
	}
}
