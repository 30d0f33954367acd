package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Tool is an external program banger runs. Err is set when it is missing
// or does not answer --version; Path may still be set in the latter case.
type Tool struct {
	Name    string
	Path    string
	Version string
	Err     error
}

const versionTimeout = 10 * time.Second

// Look finds a program: override (an absolute path from config) if given,
// else PATH, then the sbin directories that non-root PATHs lack. For
// programs whose version banger checks (firecracker, jailer, qemu-*) it
// also runs --version and parses the answer.
func Look(ctx context.Context, name, override string) Tool {
	return look(ctx, name, override, []string{"/usr/local/sbin", "/usr/sbin", "/sbin"})
}

func look(ctx context.Context, name, override string, extra []string) Tool {
	t := Tool{Name: name}
	if override != "" {
		if !filepath.IsAbs(override) {
			t.Err = fmt.Errorf("look %s: %q is not an absolute path", name, override)
			return t
		}
		if err := executable(override); err != nil {
			t.Err = fmt.Errorf("look %s: %w", name, err)
			return t
		}
		t.Path = override
	} else {
		t.Path, t.Err = search(name, extra)
		if t.Err != nil {
			return t
		}
	}
	parse := versionParser(name)
	if parse == nil {
		return t
	}
	out, err := runVersion(ctx, t.Path)
	if err != nil {
		t.Err = err
		return t
	}
	if t.Version = parse(out); t.Version == "" {
		t.Err = fmt.Errorf("%s --version: no version in %q", t.Path, tail(out))
	}
	return t
}

func search(name string, extra []string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	if !errors.Is(err, exec.ErrNotFound) {
		return "", fmt.Errorf("look %s: %w", name, err)
	}
	for _, dir := range extra {
		p := filepath.Join(dir, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("look %s: %w (searched PATH and %s)", name, exec.ErrNotFound, strings.Join(extra, ":"))
}

func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

func versionParser(name string) func(string) string {
	switch {
	case name == "firecracker" || name == "jailer":
		return FirecrackerVersion
	case strings.HasPrefix(name, "qemu-"):
		return QEMUVersion
	}
	return nil
}

func runVersion(ctx context.Context, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--version")
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w: %s", path, err, tail(string(out)))
	}
	return string(out), nil
}

// tail keeps the end of a command's output for an error message.
func tail(out string) string {
	const limit = 512
	out = strings.TrimSpace(out)
	if len(out) > limit {
		out = "..." + out[len(out)-limit:]
	}
	return out
}

// FirecrackerVersion extracts "1.16.1" from `firecracker --version` (or
// `jailer --version`), whose first line is "Firecracker v1.16.1".
func FirecrackerVersion(output string) string {
	re := regexp.MustCompile(`^(?:Firecracker|Jailer) v(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)`)
	for line := range strings.Lines(output) {
		if m := re.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			return m[1]
		}
	}
	return ""
}

// QEMUVersion extracts "7.2.19" from `qemu-system-x86_64 --version`:
// "QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)".
func QEMUVersion(output string) string {
	re := regexp.MustCompile(`^(?:QEMU emulator|qemu-\S+) version (\d+\.\d+(?:\.\d+)?)`)
	for line := range strings.Lines(output) {
		if m := re.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			return m[1]
		}
	}
	return ""
}

// AtLeast reports whether version v ("1.16.1", "v1.7.0-dev", "8.2") is at
// least min. Missing components count as 0; a pre-release sorts before its
// release. An unparsable v is never at least anything.
func AtLeast(v, min string) bool {
	a, aPre, ok := parseVersion(v)
	if !ok {
		return false
	}
	b, bPre, ok := parseVersion(min)
	if !ok {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return !aPre || bPre
}

func parseVersion(s string) (num [3]int, pre bool, ok bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		pre = s[i] == '-'
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return num, false, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return num, false, false
		}
		num[i] = n
	}
	return num, pre, true
}
