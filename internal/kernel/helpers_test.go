package kernel

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"testing"
)

// testELF builds a minimal ELF executable of the given machine whose one
// loadable segment holds body.
func testELF(t *testing.T, machine elf.Machine, body []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	h := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(machine), Version: 1,
		Entry: 0x1000000, Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: 1, Shentsize: 64,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	size := uint64(64 + 56 + len(body))
	p := elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Vaddr: 0x1000000, Paddr: 0x1000000, Filesz: size, Memsz: size, Align: 0x1000}
	binary.Write(&b, binary.LittleEndian, h)
	binary.Write(&b, binary.LittleEndian, p)
	b.Write(body)
	return b.Bytes()
}

// testVmlinux is an x86_64 ELF kernel whose image carries a banner naming
// version and, when config is not empty, an IKCONFIG blob.
func testVmlinux(t *testing.T, version, config string) []byte {
	t.Helper()
	var body bytes.Buffer
	body.WriteString("\x00%s version %s\x00")
	body.WriteString("Linux version " + version + " (builder@host) (gcc 12) #1 SMP\n\x00")
	if config != "" {
		body.WriteString("IKCFG_ST")
		zw := gzip.NewWriter(&body)
		zw.Write([]byte(config))
		zw.Close()
		body.WriteString("IKCFG_ED")
	}
	body.Write(bytes.Repeat([]byte("kernel text "), 4096))
	return testELF(t, elf.EM_X86_64, body.Bytes())
}

// testModule builds an ELF relocatable object with a .modinfo section, the
// part of a .ko that IndexModules reads.
func testModule(t *testing.T, name string, depends string) []byte {
	t.Helper()
	modinfo := []byte("license=GPL\x00depends=" + depends + "\x00name=" + name + "\x00")
	shstr := []byte("\x00.modinfo\x00.shstrtab\x00")
	modOff := uint64(64)
	strOff := modOff + uint64(len(modinfo))
	shOff := (strOff + uint64(len(shstr)) + 7) &^ 7
	h := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: 1,
		Shoff: shOff, Ehsize: 64, Shentsize: 64, Shnum: 3, Shstrndx: 2,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, h)
	b.Write(modinfo)
	b.Write(shstr)
	b.Write(make([]byte, shOff-uint64(b.Len())))
	secs := []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Flags: uint64(elf.SHF_ALLOC), Off: modOff, Size: uint64(len(modinfo)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: strOff, Size: uint64(len(shstr)), Addralign: 1},
	}
	for _, s := range secs {
		binary.Write(&b, binary.LittleEndian, s)
	}
	return b.Bytes()
}

// testBzImage wraps a compressed payload in an x86 boot protocol header
// (setup_sects 1, so protected-mode code starts at 1024).
func testBzImage(proto uint16, version string, payload []byte) []byte {
	setup := make([]byte, 1024)
	setup[hdrSetupSects] = 1
	binary.LittleEndian.PutUint16(setup[0x1fe:], 0xaa55)
	copy(setup[hdrMagic:], "HdrS")
	binary.LittleEndian.PutUint16(setup[hdrVersion:], proto)
	if version != "" {
		binary.LittleEndian.PutUint16(setup[hdrKernelVersion:], 0x100)
		copy(setup[0x300:], version+" (builder@host) #1 SMP\x00")
	}
	const pad = 16 // decompressor code sits before the payload
	binary.LittleEndian.PutUint32(setup[hdrPayloadOffset:], pad)
	binary.LittleEndian.PutUint32(setup[hdrPayloadLength:], uint32(len(payload)))
	out := append(setup, make([]byte, pad)...)
	out = append(out, payload...)
	return append(out, bytes.Repeat([]byte{0xcc}, 64)...) // code after the payload
}

// sizeAppend is the kernel build's size_append: the uncompressed length,
// little endian, after the compressed stream.
func sizeAppend(compressed []byte, n int) []byte {
	return binary.LittleEndian.AppendUint32(compressed, uint32(n))
}
