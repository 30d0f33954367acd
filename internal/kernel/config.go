package kernel

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strings"
)

// Config is a kernel build configuration (.config): option name to value,
// "y", "m", a number or a quoted string. Options that are "not set" are
// absent.
type Config map[string]string

// ParseConfig reads a kernel .config.
func ParseConfig(r io.Reader) (Config, error) {
	c := Config{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(k, "CONFIG_") {
			return nil, fmt.Errorf("parse kernel config: malformed line %q", line)
		}
		c[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse kernel config: %w", err)
	}
	return c, nil
}

// Enabled reports whether option is built in ("y") or modular ("m").
func (c Config) Enabled(option string) bool {
	v := c[option]
	return v == "y" || v == "m"
}

// scanFile calls match on each window of f in which needle occurs, with the
// window starting at needle, until match returns true.
func scanFile(path string, needle []byte, window int, match func([]byte) bool) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	const chunk = 1 << 20
	buf := make([]byte, 0, chunk+window)
	tmp := make([]byte, chunk)
	for {
		n, err := f.Read(tmp)
		buf = append(buf, tmp[:n]...)
		eof := err == io.EOF
		if err != nil && !eof {
			return err
		}
		// Look at every occurrence whose window is complete (or at EOF).
		for off := 0; ; {
			i := bytes.Index(buf[off:], needle)
			if i < 0 {
				break
			}
			i += off
			if !eof && len(buf)-i < window {
				break
			}
			if match(buf[i:min(len(buf), i+window)]) {
				return nil
			}
			off = i + 1
		}
		if eof {
			return nil
		}
		// Keep a tail long enough to hold a needle plus its window.
		keep := min(len(buf), window+len(needle))
		buf = append(buf[:0], buf[len(buf)-keep:]...)
	}
}

// embeddedConfig returns the .config text a kernel built with
// CONFIG_IKCONFIG carries after an IKCFG_ST marker as gzip data, or nil
// when it carries none.
func embeddedConfig(vmlinux string) ([]byte, error) {
	var text []byte
	err := scanFile(vmlinux, []byte("IKCFG_ST"), 1<<20, func(w []byte) bool {
		zr, err := gzip.NewReader(bytes.NewReader(w[len("IKCFG_ST"):]))
		if err != nil {
			return false
		}
		zr.Multistream(false)
		data, err := io.ReadAll(zr)
		if err != nil {
			return false
		}
		text = data
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("read embedded config: %w", err)
	}
	return text, nil
}

// elfVersion finds the kernel release in an ELF vmlinux's banner
// ("Linux version 6.1.0-57-cloud-amd64 (...)"), or "".
func elfVersion(vmlinux string) (string, error) {
	var v string
	needle := []byte("Linux version ")
	err := scanFile(vmlinux, needle, 256, func(w []byte) bool {
		f := strings.Fields(string(w[len(needle):]))
		// The banner's release is followed by "(builder@host)"; format
		// strings elsewhere in the image are not.
		if len(f) > 1 && strings.HasPrefix(f[1], "(") && validVersion(f[0]) {
			v = f[0]
			return true
		}
		return false
	})
	return v, err
}

// validVersion accepts what can name a lib/modules directory.
func validVersion(v string) bool {
	if v == "" || v == "." || v == ".." || len(v) > 128 {
		return false
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._+-~", r)) {
			return false
		}
	}
	return true
}
