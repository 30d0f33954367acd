package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Binary size units, as ParseSize reads them.
const (
	KiB int64 = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
)

// ParseSize reads a size such as "8G", "512M", "16GiB", "2048MiB" or "1T".
// Units are binary (1G = 1024M) and case-insensitive; a bare number is bytes.
func ParseSize(s string) (int64, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	digits, unit := s[:i], s[i:]
	if digits == "" {
		return 0, fmt.Errorf("size %q: want a whole number with an optional unit K, M, G or T, such as \"8G\"", s)
	}
	var mult int64
	switch strings.ToUpper(unit) {
	case "", "B":
		mult = 1
	case "K", "KIB":
		mult = KiB
	case "M", "MIB":
		mult = MiB
	case "G", "GIB":
		mult = GiB
	case "T", "TIB":
		mult = TiB
	default:
		return 0, fmt.Errorf("size %q: unknown unit %q; use K, M, G or T (binary: 1G = 1024M) or KiB, MiB, GiB, TiB", s, unit)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}

// FormatSize writes bytes in the largest unit that divides it exactly
// ("8G", "1536M"), so that ParseSize(FormatSize(n)) == n.
func FormatSize(bytes int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{TiB, "T"}, {GiB, "G"}, {MiB, "M"}, {KiB, "K"}} {
		if bytes != 0 && bytes%u.size == 0 {
			return strconv.FormatInt(bytes/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(bytes, 10)
}
