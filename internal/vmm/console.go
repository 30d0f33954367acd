package vmm

import (
	"io"
	"os"
	"regexp"
	"strings"
	"unicode"
)

// consoleWindow bounds how much of a console log ConsoleTail reads: the
// end of a long boot log is all an error message needs.
const consoleWindow = 64 << 10

// maxTailLine keeps one runaway line from swamping an error message.
const maxTailLine = 240

// ansiRe matches terminal escape sequences (CSI, OSC, two-byte escapes)
// that systemd and friends write to a console.
var ansiRe = regexp.MustCompile(`\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])`)

// ConsoleTail returns the last n non-blank lines of the console log at
// path, stripped of escape sequences and control characters and joined
// with " | " so it fits in a one-line error ("boot timed out after 2m0s;
// console tail: ..."). It returns "" when there is nothing to show.
func ConsoleTail(path string, n int) string {
	if n <= 0 {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-consoleWindow, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return ""
	}
	text := strings.ToValidUTF8(string(b), "?")
	text = ansiRe.ReplaceAllString(text, "")
	// A lone \r (progress output) starts a new line as far as we care.
	text = strings.ReplaceAll(text, "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	lines := strings.Split(text, "\n")
	if off > 0 && len(lines) > 0 {
		lines = lines[1:] // cut mid-line by the window
	}
	var out []string
	for i := len(lines) - 1; i >= 0 && len(out) < n; i-- {
		l := strings.TrimSpace(clean(lines[i]))
		if l == "" {
			continue
		}
		if r := []rune(l); len(r) > maxTailLine {
			l = string(r[:maxTailLine]) + "..."
		}
		out = append(out, l)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return strings.Join(out, " | ")
}

// clean drops control characters, keeping tabs as spaces.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t':
			return ' '
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, s)
}
