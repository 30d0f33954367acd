package host

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Layouts from linux/kvm.h and arch/x86/include/uapi/asm/kvm.h.

type kvmUserspaceMemoryRegion struct {
	slot          uint32
	flags         uint32
	guestPhysAddr uint64
	memorySize    uint64
	userspaceAddr uint64
}

type kvmRegs struct {
	rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp uint64
	r8, r9, r10, r11, r12, r13, r14, r15   uint64
	rip, rflags                            uint64
}

type kvmSegment struct {
	base                           uint64
	limit                          uint32
	selector                       uint16
	typ                            uint8
	present, dpl, db, s, l, g, avl uint8
	unusable                       uint8
	_                              uint8
}

type kvmDtable struct {
	base  uint64
	limit uint16
	_     [3]uint16
}

type kvmSregs struct {
	cs, ds, es, fs, gs, ss, tr, ldt kvmSegment
	gdt, idt                        kvmDtable
	cr0, cr2, cr3, cr4, cr8         uint64
	efer, apicBase                  uint64
	interruptBitmap                 [4]uint64
}

type kvmCPUIDEntry2 struct {
	function, index, flags uint32
	eax, ebx, ecx, edx     uint32
	_                      [3]uint32
}

// kvmCPUID2 is struct kvm_cpuid2 with room for maxCPUIDEntries entries.
type kvmCPUID2 struct {
	nent    uint32
	_       uint32
	entries [maxCPUIDEntries]kvmCPUIDEntry2
}

// kvmRun is the head of the shared kvm_run page, up to the io member of
// the exit union.
type kvmRun struct {
	requestInterruptWindow uint8
	immediateExit          uint8
	_                      [6]uint8
	exitReason             uint32
	readyForInjection      uint8
	ifFlag                 uint8
	flags                  uint16
	cr8                    uint64
	apicBase               uint64
	io                     kvmExitIO
}

type kvmExitIO struct {
	direction  uint8
	size       uint8
	port       uint16
	count      uint32
	dataOffset uint64
}

// ioctl numbers: dir<<30 | size<<16 | KVMIO(0xAE)<<8 | nr, from <asm-generic/ioctl.h>.
const (
	iocWrite = 1
	iocRead  = 2
	kvmio    = 0xAE << 8

	kvmGetVCPUMmapSize     = kvmio | 0x04
	kvmCreateVCPU          = kvmio | 0x41
	kvmSetUserMemoryRegion = iocWrite<<30 | unsafe.Sizeof(kvmUserspaceMemoryRegion{})<<16 | kvmio | 0x46
	kvmGetSupportedCPUID   = (iocRead|iocWrite)<<30 | 8<<16 | kvmio | 0x05 // size of the kvm_cpuid2 header
	kvmSetCPUID2           = iocWrite<<30 | 8<<16 | kvmio | 0x90
	kvmSetTSSAddr          = kvmio | 0x47
	kvmRunIoctl            = kvmio | 0x80
	kvmSetRegs             = iocWrite<<30 | unsafe.Sizeof(kvmRegs{})<<16 | kvmio | 0x82
	kvmGetSregs            = iocRead<<30 | unsafe.Sizeof(kvmSregs{})<<16 | kvmio | 0x83
	kvmSetSregs            = iocWrite<<30 | unsafe.Sizeof(kvmSregs{})<<16 | kvmio | 0x84
)

const (
	kvmExitIOReason = 2
	kvmExitHLT      = 5
	kvmExitIOOut    = 1
	maxGuestExits   = 8
	maxCPUIDEntries = 256 // QEMU's KVM_MAX_CPUID_ENTRIES
	x86RflagsFixed1 = 2   // bit 1 of RFLAGS is reserved and must be set

	// QEMU's choice: three pages just below 4 GiB, unused by our guest.
	// Intel CPUs without unrestricted guest need it to run real mode.
	tssAddr = 0xfffbd000

	// Guest physical layout, inside one memory slot at address 0. The
	// slot backs the whole 2 MiB page the tables map; untouched pages of
	// the anonymous mapping cost nothing.
	guestCodeAddr = 0x1000
	guestPML4     = 0x2000
	guestPDPT     = 0x3000
	guestPD       = 0x4000
	guestGDT      = 0x5000
	guestGDTR     = guestGDT + 3*8
	guestMemSize  = 2 << 20

	guestPort = 0x3f8
	// 20M instructions: milliseconds on hardware virtualization, seconds
	// when a paravirtual KVM emulates ring-0 code (kvm_pvm: ~3M/s).
	spinCount = 10_000_000
	markReal  = 'R' // written in real mode, before the switch
	markLong  = 'L' // written in 64-bit mode, after it
	markDone  = 'D' // written after spinning spinCount times

	gdtCode64 = 0x00af9a000000ffff // present, ring 0, execute/read, L=1, G=1
	gdtData   = 0x00cf92000000ffff // present, ring 0, read/write, D=1, G=1
	pteFlags  = 0x3                // present, writable
	pdeHuge   = 0x83               // present, writable, 2 MiB page
	cr4PAE    = 0x20
	cr0PGETPE = 0x80000011
	msrEFER   = 0xc0000080
	eferLME   = 0x100
)

// guestCode starts in real mode at guestCodeAddr like a reset CPU, writes
// markReal, switches itself to 64-bit long mode as every kernel's boot path
// does, writes markLong, spins, writes markDone and halts.
//
// Each step exists because something less was fooled on a real host: a
// kvm_pvm host (paravirtual KVM inside a cloud VM) runs a real-mode
// out+hlt and even the mode switch, but emulates ring-0 instructions about
// a thousand times slower than hardware, so a kernel never boots there.
func guestCode() []byte {
	le := binary.LittleEndian
	real := []byte{
		0xba, 0, 0, // mov dx, guestPort
		0xb0, markReal, // mov al, 'R'
		0xee,                         // out dx, al
		0x66, 0x0f, 0x01, 0x16, 0, 0, // lgdt [guestGDTR]
		0x66, 0xb8, 0, 0, 0, 0, // mov eax, cr4PAE
		0x0f, 0x22, 0xe0, // mov cr4, eax
		0x66, 0xb8, 0, 0, 0, 0, // mov eax, guestPML4
		0x0f, 0x22, 0xd8, // mov cr3, eax
		0x66, 0xb9, 0, 0, 0, 0, // mov ecx, msrEFER
		0x0f, 0x32, // rdmsr (clobbers edx)
		0x0d, 0, 0, // or ax, eferLME
		0x0f, 0x30, // wrmsr
		0x66, 0xb8, 0, 0, 0, 0, // mov eax, cr0PGETPE
		0x0f, 0x22, 0xc0, // mov cr0, eax
		0x66, 0xea, 0, 0, 0, 0, 0x08, 0x00, // jmp dword 0x08:long
	}
	le.PutUint16(real[1:], guestPort)
	le.PutUint16(real[10:], guestGDTR)
	le.PutUint32(real[14:], cr4PAE)
	le.PutUint32(real[23:], guestPML4)
	le.PutUint32(real[32:], msrEFER)
	le.PutUint16(real[39:], eferLME)
	le.PutUint32(real[45:], cr0PGETPE)
	le.PutUint32(real[54:], guestCodeAddr+uint32(len(real)))
	long := []byte{
		0xba, 0, 0, 0, 0, // mov edx, guestPort
		0xb0, markLong, // mov al, 'L'
		0xee,             // out dx, al
		0xb9, 0, 0, 0, 0, // mov ecx, spinCount
		0xff, 0xc9, // spin: dec ecx
		0x75, 0xfc, // jnz spin
		0xb0, markDone, // mov al, 'D'
		0xee, // out dx, al
		0xf4, // hlt
	}
	le.PutUint32(long[1:], guestPort)
	le.PutUint32(long[9:], spinCount)
	return append(real, long...)
}

// layoutGuest writes the guest's memory: code, page tables identity-mapping
// the first 2 MiB as one large page, and a GDT whose selector 8 is a 64-bit
// code segment. mem is the memory slot at guest physical address 0.
func layoutGuest(mem []byte) {
	le := binary.LittleEndian
	copy(mem[guestCodeAddr:], guestCode())
	le.PutUint64(mem[guestPML4:], guestPDPT|pteFlags)
	le.PutUint64(mem[guestPDPT:], guestPD|pteFlags)
	le.PutUint64(mem[guestPD:], pdeHuge)
	le.PutUint64(mem[guestGDT+8:], gdtCode64)
	le.PutUint64(mem[guestGDT+16:], gdtData)
	le.PutUint16(mem[guestGDTR:], 3*8-1)
	le.PutUint32(mem[guestGDTR+2:], guestGDT)
}

// wantGuestTrace is what guestCode does on a working KVM.
func wantGuestTrace() []string {
	return []string{outMark(markReal), outMark(markLong), outMark(markDone), "hlt"}
}

func outMark(b byte) string { return fmt.Sprintf("out %#x %#02x", guestPort, b) }

// stalledAt says how far a guest that missed its deadline got.
func stalledAt(trace []string, d time.Duration) string {
	switch {
	case len(trace) == 0:
		return fmt.Sprintf("not one guest instruction ran in %v", d)
	case slices.Equal(trace, []string{outMark(markReal)}):
		return fmt.Sprintf("its switch to 64-bit mode did not finish in %v", d)
	case slices.Equal(trace, []string{outMark(markReal), outMark(markLong)}):
		return fmt.Sprintf("%d loop iterations took over %v, so guest code is emulated, not run by the CPU", spinCount, d)
	}
	return fmt.Sprintf("it stalled after %q", trace)
}

// runTestGuest runs guestCode in a fresh VM and returns the exits it saw,
// as text. It must run on a locked OS thread; it returns errStopped when
// stop was set and KVM_RUN was interrupted.
func runTestGuest(kvmFd int, stop *atomic.Bool) ([]string, error) {
	vmFd, err := unix.IoctlRetInt(kvmFd, kvmCreateVM)
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VM: %w", err)
	}
	defer unix.Close(vmFd)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(vmFd), kvmSetTSSAddr, tssAddr); errno != 0 {
		return nil, fmt.Errorf("KVM_SET_TSS_ADDR: %w", errno)
	}

	mem, err := unix.Mmap(-1, 0, guestMemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap guest memory: %w", err)
	}
	defer unix.Munmap(mem)
	layoutGuest(mem)
	region := kvmUserspaceMemoryRegion{
		memorySize:    guestMemSize,
		userspaceAddr: uint64(uintptr(unsafe.Pointer(&mem[0]))),
	}
	if err := ioctlPtr(vmFd, kvmSetUserMemoryRegion, unsafe.Pointer(&region)); err != nil {
		return nil, fmt.Errorf("KVM_SET_USER_MEMORY_REGION: %w", err)
	}

	vcpuFd, err := unix.IoctlRetInt(vmFd, kvmCreateVCPU)
	if err != nil {
		return nil, fmt.Errorf("KVM_CREATE_VCPU: %w", err)
	}
	defer unix.Close(vcpuFd)
	size, err := unix.IoctlRetInt(kvmFd, kvmGetVCPUMmapSize)
	if err != nil {
		return nil, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %w", err)
	}
	if size < int(unsafe.Sizeof(kvmRun{})) {
		return nil, fmt.Errorf("KVM_GET_VCPU_MMAP_SIZE: %d bytes, too small", size)
	}
	runMem, err := unix.Mmap(vcpuFd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap kvm_run: %w", err)
	}
	defer unix.Munmap(runMem)
	run := (*kvmRun)(unsafe.Pointer(&runMem[0]))

	// Without a CPUID that advertises long mode, KVM refuses EFER.LME.
	cpuid := new(kvmCPUID2)
	cpuid.nent = maxCPUIDEntries
	if err := ioctlPtr(kvmFd, kvmGetSupportedCPUID, unsafe.Pointer(cpuid)); err != nil {
		return nil, fmt.Errorf("KVM_GET_SUPPORTED_CPUID: %w", err)
	}
	if err := ioctlPtr(vcpuFd, kvmSetCPUID2, unsafe.Pointer(cpuid)); err != nil {
		return nil, fmt.Errorf("KVM_SET_CPUID2: %w", err)
	}

	var sregs kvmSregs
	if err := ioctlPtr(vcpuFd, kvmGetSregs, unsafe.Pointer(&sregs)); err != nil {
		return nil, fmt.Errorf("KVM_GET_SREGS: %w", err)
	}
	sregs.cs.base, sregs.cs.selector = 0, 0
	if err := ioctlPtr(vcpuFd, kvmSetSregs, unsafe.Pointer(&sregs)); err != nil {
		return nil, fmt.Errorf("KVM_SET_SREGS: %w", err)
	}
	regs := kvmRegs{rip: guestCodeAddr, rflags: x86RflagsFixed1}
	if err := ioctlPtr(vcpuFd, kvmSetRegs, unsafe.Pointer(&regs)); err != nil {
		return nil, fmt.Errorf("KVM_SET_REGS: %w", err)
	}

	var trace []string
	for len(trace) < maxGuestExits {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(vcpuFd), kvmRunIoctl, 0)
		if errno == unix.EINTR {
			if stop.Load() {
				return trace, errStopped
			}
			continue // a stray signal, not ours
		}
		if errno != 0 {
			return trace, fmt.Errorf("KVM_RUN after %q: %w", trace, errno)
		}
		switch run.exitReason {
		case kvmExitIOReason:
			io := run.io
			if io.direction != kvmExitIOOut || io.size != 1 || io.count != 1 || io.dataOffset >= uint64(len(runMem)) {
				return trace, &guestError{fmt.Sprintf("unexpected port I/O after %q: direction %d size %d count %d port %#x",
					trace, io.direction, io.size, io.count, io.port)}
			}
			trace = append(trace, fmt.Sprintf("out %#x %#02x", io.port, runMem[io.dataOffset]))
		case kvmExitHLT:
			trace = append(trace, "hlt")
			if want := wantGuestTrace(); !slices.Equal(trace, want) {
				return trace, &guestError{fmt.Sprintf("guest exits %q, want %q", trace, want)}
			}
			return trace, nil
		default:
			return trace, &guestError{fmt.Sprintf("guest exit %s after %q", exitName(run.exitReason), trace)}
		}
	}
	return trace, &guestError{fmt.Sprintf("guest did not halt after %d exits: %q", maxGuestExits, trace)}
}

func ioctlPtr(fd int, req uintptr, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

func exitName(r uint32) string {
	switch r {
	case 0:
		return "KVM_EXIT_UNKNOWN"
	case 1:
		return "KVM_EXIT_EXCEPTION"
	case 6:
		return "KVM_EXIT_MMIO"
	case 8:
		return "KVM_EXIT_SHUTDOWN (triple fault)"
	case 9:
		return "KVM_EXIT_FAIL_ENTRY"
	case 17:
		return "KVM_EXIT_INTERNAL_ERROR"
	}
	return fmt.Sprintf("reason %d", r)
}
