package config

import (
	"math"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"4096", 4096},
		{"512B", 512},
		{"4K", 4 << 10},
		{"4KiB", 4 << 10},
		{"512M", 512 << 20},
		{"2048MiB", 2 << 30},
		{"8G", 8 << 30},
		{"8g", 8 << 30},
		{"16GiB", 16 << 30},
		{"16gib", 16 << 30},
		{"1T", 1 << 40},
		{"16TiB", 16 << 40},
		{"8388607T", 8388607 << 40},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseSizeErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `size "": want a whole number with an optional unit K, M, G or T, such as "8G"`},
		{"G", `size "G": want a whole number with an optional unit K, M, G or T, such as "8G"`},
		{"-1G", `size "-1G": want a whole number with an optional unit K, M, G or T, such as "8G"`},
		{"1.5G", `size "1.5G": unknown unit ".5G"; use K, M, G or T (binary: 1G = 1024M) or KiB, MiB, GiB, TiB`},
		{"8GB", `size "8GB": unknown unit "GB"; use K, M, G or T (binary: 1G = 1024M) or KiB, MiB, GiB, TiB`},
		{"8 G", `size "8 G": unknown unit " G"; use K, M, G or T (binary: 1G = 1024M) or KiB, MiB, GiB, TiB`},
		{"8388608T", `size "8388608T": too large`},
		{"99999999999999999999", `size "99999999999999999999": too large`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseSize(tt.in)
			if err == nil || err.Error() != tt.want {
				t.Errorf("ParseSize(%q) error = %v, want %s", tt.in, err, tt.want)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{0, "0"},
		{1, "1"},
		{1000, "1000"},
		{1024, "1K"},
		{1536 << 20, "1536M"},
		{512 << 20, "512M"},
		{8 << 30, "8G"},
		{16 << 40, "16T"},
		{5 << 10, "5K"},
		{math.MaxInt64, "9223372036854775807"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			got := FormatSize(tt.in)
			if got != tt.want {
				t.Errorf("FormatSize(%d) = %q, want %q", tt.in, got, tt.want)
			}
			back, err := ParseSize(got)
			if err != nil || back != tt.in {
				t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", tt.in, back, err)
			}
		})
	}
}
