package host

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
)

// The layouts and request numbers must match linux/kvm.h byte for byte;
// the expected values are the kernel's.
func TestKVMABI(t *testing.T) {
	got := map[string]uint64{
		"sizeof kvm_userspace_memory_region":  uint64(unsafe.Sizeof(kvmUserspaceMemoryRegion{})),
		"sizeof kvm_regs":                     uint64(unsafe.Sizeof(kvmRegs{})),
		"sizeof kvm_segment":                  uint64(unsafe.Sizeof(kvmSegment{})),
		"sizeof kvm_dtable":                   uint64(unsafe.Sizeof(kvmDtable{})),
		"sizeof kvm_sregs":                    uint64(unsafe.Sizeof(kvmSregs{})),
		"sizeof kvm_cpuid_entry2":             uint64(unsafe.Sizeof(kvmCPUIDEntry2{})),
		"offsetof kvm_cpuid2.entries":         uint64(unsafe.Offsetof(kvmCPUID2{}.entries)),
		"offsetof kvm_sregs.cr0":              uint64(unsafe.Offsetof(kvmSregs{}.cr0)),
		"offsetof kvm_sregs.interrupt_bitmap": uint64(unsafe.Offsetof(kvmSregs{}.interruptBitmap)),
		"offsetof kvm_regs.rip":               uint64(unsafe.Offsetof(kvmRegs{}.rip)),
		"offsetof kvm_run.exit_reason":        uint64(unsafe.Offsetof(kvmRun{}.exitReason)),
		"offsetof kvm_run.io":                 uint64(unsafe.Offsetof(kvmRun{}.io)),
		"offsetof kvm_run.io.data_offset":     uint64(unsafe.Offsetof(kvmExitIO{}.dataOffset)),
		"KVM_GET_API_VERSION":                 kvmGetAPIVersion,
		"KVM_CREATE_VM":                       kvmCreateVM,
		"KVM_GET_VCPU_MMAP_SIZE":              kvmGetVCPUMmapSize,
		"KVM_GET_SUPPORTED_CPUID":             uint64(kvmGetSupportedCPUID),
		"KVM_CREATE_VCPU":                     kvmCreateVCPU,
		"KVM_SET_USER_MEMORY_REGION":          uint64(kvmSetUserMemoryRegion),
		"KVM_SET_TSS_ADDR":                    kvmSetTSSAddr,
		"KVM_RUN":                             kvmRunIoctl,
		"KVM_SET_REGS":                        uint64(kvmSetRegs),
		"KVM_GET_SREGS":                       uint64(kvmGetSregs),
		"KVM_SET_SREGS":                       uint64(kvmSetSregs),
		"KVM_SET_CPUID2":                      uint64(kvmSetCPUID2),
	}
	want := map[string]uint64{
		"sizeof kvm_userspace_memory_region":  32,
		"sizeof kvm_regs":                     144,
		"sizeof kvm_segment":                  24,
		"sizeof kvm_dtable":                   16,
		"sizeof kvm_sregs":                    312,
		"sizeof kvm_cpuid_entry2":             40,
		"offsetof kvm_cpuid2.entries":         8,
		"offsetof kvm_sregs.cr0":              224,
		"offsetof kvm_sregs.interrupt_bitmap": 280,
		"offsetof kvm_regs.rip":               128,
		"offsetof kvm_run.exit_reason":        8,
		"offsetof kvm_run.io":                 32,
		"offsetof kvm_run.io.data_offset":     8,
		"KVM_GET_API_VERSION":                 0xae00,
		"KVM_CREATE_VM":                       0xae01,
		"KVM_GET_VCPU_MMAP_SIZE":              0xae04,
		"KVM_GET_SUPPORTED_CPUID":             0xc008ae05,
		"KVM_CREATE_VCPU":                     0xae41,
		"KVM_SET_USER_MEMORY_REGION":          0x4020ae46,
		"KVM_SET_TSS_ADDR":                    0xae47,
		"KVM_RUN":                             0xae80,
		"KVM_SET_REGS":                        0x4090ae82,
		"KVM_GET_SREGS":                       0x8138ae83,
		"KVM_SET_SREGS":                       0x4138ae84,
		"KVM_SET_CPUID2":                      0x4008ae90,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestGuestCode pins the machine code; TestGuestCodeDisassembly and
// TestGuestUnderQEMU check that these bytes mean what the comments say.
func TestGuestCode(t *testing.T) {
	want := "baf803" + "b052" + "ee" + // mov dx, 0x3f8; mov al, 'R'; out
		"660f01161850" + // lgdt [0x5018]
		"66b820000000" + "0f22e0" + // cr4 = PAE
		"66b800200000" + "0f22d8" + // cr3 = 0x2000
		"66b9800000c0" + "0f32" + "0d0001" + "0f30" + // EFER |= LME
		"66b811000080" + "0f22c0" + // cr0 = PG|ET|PE
		"66ea3c1000000800" + // jmp 0x08:0x103c
		"baf8030000" + "b04c" + "ee" + // mov edx, 0x3f8; mov al, 'L'; out
		"b980969800" + "ffc9" + "75fc" + // 10M x dec ecx; jnz
		"b044" + "ee" + "f4" // mov al, 'D'; out; hlt
	if got := hex.EncodeToString(guestCode()); got != want {
		t.Errorf("guestCode\n got %s\nwant %s", got, want)
	}

	mem := make([]byte, guestGDTR+6)
	layoutGuest(mem)
	le := func(off, n int) string { return hex.EncodeToString(mem[off : off+n]) }
	gotLayout := map[string]string{
		"pml4[0]": le(guestPML4, 8), "pdpt[0]": le(guestPDPT, 8), "pd[0]": le(guestPD, 8),
		"gdt[0]": le(guestGDT, 8), "gdt[1]": le(guestGDT+8, 8), "gdt[2]": le(guestGDT+16, 8), "gdtr": le(guestGDTR, 6),
	}
	wantLayout := map[string]string{
		"pml4[0]": "0330000000000000", "pdpt[0]": "0340000000000000", "pd[0]": "8300000000000000",
		"gdt[0]": "0000000000000000", "gdt[1]": "ffff0000009aaf00", "gdt[2]": "ffff00000092cf00", "gdtr": "170000500000",
	}
	if diff := cmp.Diff(wantLayout, gotLayout); diff != "" {
		t.Errorf("layout (-want +got):\n%s", diff)
	}
}

func TestGuestCodeDisassembly(t *testing.T) {
	objdump, err := exec.LookPath("objdump")
	if err != nil {
		t.Skip("objdump not installed (binutils)")
	}
	code := guestCode()
	bin := filepath.Join(t.TempDir(), "guest.bin")
	if err := os.WriteFile(bin, code, 0o644); err != nil {
		t.Fatal(err)
	}
	const split = 0x3c // where the far jump lands
	disasm := func(arch string, args ...string) []string {
		argv := append([]string{"-D", "-b", "binary", "-m", arch}, args...)
		argv = append(argv, bin)
		out, err := exec.Command(objdump, argv...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v: %s", objdump, strings.Join(argv, " "), err, tail(string(out)))
		}
		var insns []string
		for line := range strings.Lines(string(out)) {
			f := strings.Split(strings.TrimRight(line, "\n"), "\t")
			if len(f) == 3 {
				insns = append(insns, strings.Join(strings.Fields(f[2]), " "))
			}
		}
		return insns
	}
	got := append(disasm("i8086", fmt.Sprintf("--stop-address=%#x", split)), disasm("i386:x86-64", fmt.Sprintf("--start-address=%#x", split))...)
	want := []string{
		"mov $0x3f8,%dx", "mov $0x52,%al", "out %al,(%dx)",
		"lgdtl 0x5018",
		"mov $0x20,%eax", "mov %eax,%cr4",
		"mov $0x2000,%eax", "mov %eax,%cr3",
		"mov $0xc0000080,%ecx", "rdmsr", "or $0x100,%ax", "wrmsr",
		"mov $0x80000011,%eax", "mov %eax,%cr0",
		"ljmpl $0x8,$0x103c",
		"mov $0x3f8,%edx", "mov $0x4c,%al", "out %al,(%dx)",
		"mov $0x989680,%ecx", "dec %ecx", fmt.Sprintf("jne %#x", split+13),
		"mov $0x44,%al", "out %al,(%dx)", "hlt",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("disassembly (-want +got):\n%s", diff)
	}
}

// TestGuestUnderQEMU runs the test guest on QEMU's emulated CPU, which
// checks page tables, descriptors and mode switches like hardware does: a
// guest that is wrong would make every host look as if KVM were broken.
func TestGuestUnderQEMU(t *testing.T) {
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("BANGER_E2E") == "1" {
			t.Fatal("qemu-system-x86_64 not installed")
		}
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	dir := t.TempDir()
	// 64 KiB firmware whose reset vector (F000:FFF0) jumps to 0000:1000,
	// the state runTestGuest gives the vCPU.
	bios := make([]byte, 64<<10)
	copy(bios[0xfff0:], []byte{0xea, 0x00, 0x10, 0x00, 0x00})
	mem := make([]byte, guestGDTR+6)
	layoutGuest(mem)
	biosPath, memPath, serial := filepath.Join(dir, "bios.bin"), filepath.Join(dir, "mem.bin"), filepath.Join(dir, "serial")
	for p, b := range map[string][]byte{biosPath: bios, memPath: mem} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	argv := []string{"-accel", "tcg", "-nodefaults", "-display", "none", "-no-reboot", "-m", "16",
		"-bios", biosPath, "-device", "loader,file=" + memPath + ",addr=0,force-raw=on",
		"-serial", "file:" + serial}
	cmd := exec.CommandContext(ctx, qemu, argv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() { cmd.Process.Kill(); <-exited }()

	// The guest halts with interrupts off, so QEMU exits only on a triple
	// fault (-no-reboot) or when killed.
	want := string([]byte{markReal, markLong, markDone})
	var got []byte
wait:
	for len(got) < len(want) {
		select {
		case <-ctx.Done():
			break wait
		case <-exited:
			got, _ = os.ReadFile(serial)
			break wait
		case <-time.After(20 * time.Millisecond):
			got, _ = os.ReadFile(serial)
		}
	}
	if string(got) != want {
		t.Errorf("guest wrote %q to the serial port, want %q; %s %s: %s", got, want, qemu, strings.Join(argv, " "), tail(out.String()))
	}
}

func TestStalledAt(t *testing.T) {
	tests := []struct {
		trace []string
		want  string
	}{
		{nil, "not one guest instruction ran in 2s"},
		{[]string{outMark(markReal)}, "its switch to 64-bit mode did not finish in 2s"},
		{[]string{outMark(markReal), outMark(markLong)}, "10000000 loop iterations took over 2s, so guest code is emulated, not run by the CPU"},
		{[]string{"out 0x0 0x0"}, `it stalled after ["out 0x0 0x0"]`},
	}
	for _, tt := range tests {
		if got := stalledAt(tt.trace, 2*time.Second); got != tt.want {
			t.Errorf("stalledAt(%q) = %q, want %q", tt.trace, got, tt.want)
		}
	}
}
