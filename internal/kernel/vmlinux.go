package kernel

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// ErrNotKernel is returned for input that is neither an x86_64 bzImage nor
// an x86_64 ELF vmlinux.
var ErrNotKernel = errors.New("not an x86_64 kernel (bzImage or ELF vmlinux)")

// Offsets in the x86 boot protocol header (Documentation/arch/x86/boot.rst).
const (
	hdrSetupSects    = 0x1f1
	hdrMagic         = 0x202
	hdrVersion       = 0x206
	hdrKernelVersion = 0x20e
	hdrPayloadOffset = 0x248
	hdrPayloadLength = 0x24c
	hdrEnd           = 0x250
	// payload_offset/payload_length exist from protocol 2.08 on.
	minProtocol = 0x0208
)

// ExtractVmlinux writes the uncompressed ELF vmlinux contained in the kernel
// image r (size bytes) to w. r may be a bzImage (as in /boot/vmlinuz-*),
// whose payload is decompressed according to its magic (LZ4 legacy, gzip,
// zstd, xz, lzma), or already an ELF vmlinux, which is copied. Firecracker
// on x86_64 boots only the ELF form.
func ExtractVmlinux(r io.ReaderAt, size int64, w io.Writer) error {
	var magic [4]byte
	if _, err := r.ReadAt(magic[:], 0); err != nil {
		return fmt.Errorf("extract vmlinux: read header: %w", notKernelIfShort(err))
	}
	if string(magic[:]) == elf.ELFMAG {
		if err := checkVmlinuxELF(io.NewSectionReader(r, 0, size)); err != nil {
			return fmt.Errorf("extract vmlinux: %w", err)
		}
		if _, err := io.Copy(w, io.NewSectionReader(r, 0, size)); err != nil {
			return fmt.Errorf("extract vmlinux: copy: %w", err)
		}
		return nil
	}
	payload, err := bzImagePayload(r, size)
	if err != nil {
		return fmt.Errorf("extract vmlinux: %w", err)
	}
	if err := decompressPayload(payload, w); err != nil {
		return fmt.Errorf("extract vmlinux: %w", err)
	}
	return nil
}

func notKernelIfShort(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrNotKernel
	}
	return err
}

// bzImagePayload locates the compressed kernel inside a bzImage.
func bzImagePayload(r io.ReaderAt, size int64) (*io.SectionReader, error) {
	var hdr [hdrEnd]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return nil, notKernelIfShort(err)
	}
	if string(hdr[hdrMagic:hdrMagic+4]) != "HdrS" {
		return nil, ErrNotKernel
	}
	proto := binary.LittleEndian.Uint16(hdr[hdrVersion:])
	if proto < minProtocol {
		return nil, fmt.Errorf("boot protocol %d.%02d has no payload header (need 2.08 or later)", proto>>8, proto&0xff)
	}
	setup := int64(hdr[hdrSetupSects])
	if setup == 0 {
		setup = 4 // boot protocol: 0 means 4
	}
	start := (setup+1)*512 + int64(binary.LittleEndian.Uint32(hdr[hdrPayloadOffset:]))
	length := int64(binary.LittleEndian.Uint32(hdr[hdrPayloadLength:]))
	if length < 8 || start+length > size {
		return nil, fmt.Errorf("bzImage payload [%d, +%d) lies outside the %d-byte file", start, length, size)
	}
	return io.NewSectionReader(r, start, length), nil
}

// decompressPayload decompresses a bzImage payload. Every kernel compressor
// leaves the uncompressed length in the payload's last four bytes (gzip's
// ISIZE, the size_append of the others; arch/x86/boot/compressed/mkpiggy.c
// relies on it), so exactly that many bytes are read and anything after
// the compressed stream is never looked at.
func decompressPayload(p *io.SectionReader, w io.Writer) error {
	var tail [4]byte
	if _, err := p.ReadAt(tail[:], p.Size()-4); err != nil {
		return fmt.Errorf("read payload size: %w", err)
	}
	want := int64(binary.LittleEndian.Uint32(tail[:]))
	var m [6]byte
	if _, err := p.ReadAt(m[:], 0); err != nil {
		return fmt.Errorf("read payload magic: %w", err)
	}
	src := io.NewSectionReader(p, 0, p.Size())
	var (
		dec    io.Reader
		format string
	)
	switch {
	case bytes.HasPrefix(m[:], []byte{0x02, 0x21, 0x4c, 0x18}):
		format = "lz4"
		dec = lz4.NewReader(src)
	case bytes.HasPrefix(m[:], []byte{0x1f, 0x8b}):
		format = "gzip"
		zr, err := gzip.NewReader(src)
		if err != nil {
			return fmt.Errorf("gzip payload: %w", err)
		}
		zr.Multistream(false)
		dec = zr
	case bytes.HasPrefix(m[:], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		format = "zstd"
		zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(1<<31))
		if err != nil {
			return fmt.Errorf("zstd payload: %w", err)
		}
		defer zr.Close()
		dec = zr
	case bytes.HasPrefix(m[:], []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		format = "xz"
		zr, err := xz.ReaderConfig{SingleStream: true}.NewReader(src)
		if err != nil {
			return fmt.Errorf("xz payload: %w", err)
		}
		dec = zr
	case m[0] == 0x5d && m[1] == 0x00 && m[2] == 0x00:
		format = "lzma"
		zr, err := lzma.NewReader(src)
		if err != nil {
			return fmt.Errorf("lzma payload: %w", err)
		}
		dec = zr
	default:
		return fmt.Errorf("bzImage payload has unsupported compression (magic % x; supported: lz4, gzip, zstd, xz, lzma)", m[:4])
	}
	head := &headBuffer{max: 64}
	n, err := io.CopyN(io.MultiWriter(head, w), dec, want)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%s payload: truncated: stream ends after %d of %d bytes", format, n, want)
		}
		return fmt.Errorf("%s payload: after %d of %d bytes: %w", format, n, want, err)
	}
	if err := checkELFHeader(head.buf); err != nil {
		return fmt.Errorf("%s payload: %w", format, err)
	}
	return nil
}

// headBuffer keeps the first max bytes written to it.
type headBuffer struct {
	buf []byte
	max int
}

func (h *headBuffer) Write(p []byte) (int, error) {
	if room := h.max - len(h.buf); room > 0 {
		h.buf = append(h.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// checkELFHeader checks the ELF file header only, for streams that cannot
// be seeked; CheckVmlinux does the full check on a file.
func checkELFHeader(b []byte) error {
	var h elf.Header64
	if len(b) < binary.Size(h) || string(b[:4]) != elf.ELFMAG {
		return errors.New("decompressed kernel is not an ELF file")
	}
	if err := binary.Read(bytes.NewReader(b), binary.LittleEndian, &h); err != nil {
		return err
	}
	if elf.Class(h.Ident[elf.EI_CLASS]) != elf.ELFCLASS64 || elf.Machine(h.Machine) != elf.EM_X86_64 {
		return fmt.Errorf("decompressed kernel is %v %v, want ELFCLASS64 EM_X86_64", elf.Class(h.Ident[elf.EI_CLASS]), elf.Machine(h.Machine))
	}
	if elf.Type(h.Type) != elf.ET_EXEC {
		return fmt.Errorf("decompressed kernel is an ELF of type %v, want ET_EXEC", elf.Type(h.Type))
	}
	return nil
}

// checkVmlinuxELF checks that r holds a bootable x86_64 ELF kernel.
func checkVmlinuxELF(r io.ReaderAt) error {
	f, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotKernel, err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%w: ELF is %v %v", ErrNotKernel, f.Class, f.Machine)
	}
	if f.Type != elf.ET_EXEC {
		return fmt.Errorf("%w: ELF of type %v", ErrNotKernel, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			return nil
		}
	}
	return fmt.Errorf("%w: ELF has no loadable segment", ErrNotKernel)
}

// bzImageVersion returns the kernel release ("6.1.0-57-cloud-amd64") from
// a bzImage's kernel_version string, or "" when it has none.
func bzImageVersion(r io.ReaderAt) string {
	var hdr [hdrEnd]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil || string(hdr[hdrMagic:hdrMagic+4]) != "HdrS" {
		return ""
	}
	ptr := binary.LittleEndian.Uint16(hdr[hdrKernelVersion:])
	if ptr == 0 {
		return ""
	}
	s, err := bufio.NewReader(io.NewSectionReader(r, int64(ptr)+0x200, 256)).ReadString(0)
	if err != nil {
		return ""
	}
	if f := bytes.Fields([]byte(s[:len(s)-1])); len(f) > 0 {
		return string(f[0])
	}
	return ""
}
