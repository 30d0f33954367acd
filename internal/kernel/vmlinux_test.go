package kernel

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

func compress(t *testing.T, format string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	var err error
	switch format {
	case "lz4":
		zw := lz4.NewWriter(&b)
		if err := zw.Apply(lz4.LegacyOption(true)); err != nil {
			t.Fatal(err)
		}
		w = zw
	case "gzip":
		w = gzip.NewWriter(&b)
	case "zstd":
		w, err = zstd.NewWriter(&b)
	case "xz":
		w, err = xz.NewWriter(&b)
	case "lzma":
		w, err = lzma.NewWriter(&b)
	default:
		t.Fatalf("unknown format %s", format)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if format == "gzip" {
		return b.Bytes() // gzip's own trailer ends in the size
	}
	return sizeAppend(b.Bytes(), len(data))
}

func TestExtractVmlinux(t *testing.T) {
	vmlinux := testVmlinux(t, "6.1.0-test", "")
	for _, format := range []string{"lz4", "gzip", "zstd", "xz", "lzma"} {
		t.Run(format, func(t *testing.T) {
			img := testBzImage(0x020f, "6.1.0-test", compress(t, format, vmlinux))
			var out bytes.Buffer
			if err := ExtractVmlinux(bytes.NewReader(img), int64(len(img)), &out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), vmlinux) {
				t.Errorf("extracted %d bytes, differ from the %d-byte vmlinux", out.Len(), len(vmlinux))
			}
		})
	}
	t.Run("elf passthrough", func(t *testing.T) {
		var out bytes.Buffer
		if err := ExtractVmlinux(bytes.NewReader(vmlinux), int64(len(vmlinux)), &out); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), vmlinux) {
			t.Error("ELF input was not copied unchanged")
		}
	})
}

func TestExtractVmlinuxErrors(t *testing.T) {
	vmlinux := testVmlinux(t, "6.1.0-test", "")
	arm := testELF(t, elf.EM_AARCH64, []byte("arm kernel"))
	truncated := compress(t, "lz4", vmlinux)
	truncated = sizeAppend(truncated[:len(truncated)-4], len(vmlinux)+100)
	corrupt := compress(t, "xz", vmlinux)
	for i := 100; i < 140; i++ {
		corrupt[i] ^= 0x5a
	}
	tests := []struct {
		name    string
		input   []byte
		notKern bool   // errors.Is ErrNotKernel
		want    string // substring of the error
	}{
		{name: "empty", input: nil, notKern: true},
		{name: "text", input: bytes.Repeat([]byte("hello world\n"), 100), notKern: true},
		{name: "arm64 elf", input: arm, notKern: true, want: "EM_AARCH64"},
		{name: "old protocol", input: testBzImage(0x0206, "", compress(t, "gzip", vmlinux)), want: "boot protocol 2.06"},
		{name: "unknown compression", input: testBzImage(0x020f, "", sizeAppend([]byte("BZh91AY&SY junk"), 10)), want: "unsupported compression"},
		{name: "payload not elf", input: testBzImage(0x020f, "", compress(t, "zstd", bytes.Repeat([]byte("x"), 200))), want: "not an ELF"},
		{name: "payload arm64", input: testBzImage(0x020f, "", compress(t, "gzip", arm)), want: "EM_AARCH64"},
		{name: "truncated", input: testBzImage(0x020f, "", truncated), want: "truncated"},
		{name: "corrupt", input: testBzImage(0x020f, "", corrupt), want: "xz payload: after"},
		{name: "payload outside file", input: testBzImage(0x020f, "", compress(t, "gzip", vmlinux))[:1100], want: "outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ExtractVmlinux(bytes.NewReader(tt.input), int64(len(tt.input)), io.Discard)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.notKern != errors.Is(err, ErrNotKernel) {
				t.Errorf("errors.Is(ErrNotKernel) = %v, want %v: %v", !tt.notKern, tt.notKern, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestBzImageVersion(t *testing.T) {
	tests := []struct {
		name string
		img  []byte
		want string
	}{
		{"with version", testBzImage(0x020f, "6.1.0-57-cloud-amd64", []byte("payload.")), "6.1.0-57-cloud-amd64"},
		{"no version", testBzImage(0x020f, "", []byte("payload.")), ""},
		{"not a bzImage", []byte(strings.Repeat("x", 2048)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := bzImageVersion(bytes.NewReader(tt.img)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
