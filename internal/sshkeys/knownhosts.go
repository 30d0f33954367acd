package sshkeys

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/banger/banger/internal/atomicfile"
	"github.com/banger/banger/internal/config"
)

// ErrHostKeyChanged matches (errors.Is) the error of a guest whose host key
// differs from the one recorded for it.
var ErrHostKeyChanged = errors.New("host key changed")

// HostKeyChangedError says which VM offered which key instead of which.
type HostKeyChangedError struct {
	Name       string
	Known, Got string // SHA256 fingerprints
}

func (e *HostKeyChangedError) Error() string {
	return fmt.Sprintf("host key of VM %q changed (known %s, the guest has %s): possible impersonation; if you recreated the VM, run banger vm delete %s first",
		e.Name, e.Known, e.Got, e.Name)
}

// Is makes errors.Is(err, ErrHostKeyChanged) true.
func (e *HostKeyChangedError) Is(target error) bool { return target == ErrHostKeyChanged }

// ownerPrefix starts the comment of every line banger writes; the VM's
// name follows. A line without it is never touched.
const ownerPrefix = "banger:"

// Host is the name a VM's host key is recorded under (and the HostKeyAlias
// `banger vm ssh` passes): NAME.vm.
func Host(name string) string { return name + ".vm" }

// KnownHosts is the known_hosts file bangerd keeps for guests. Each VM has
// two lines, one for NAME.vm and one for its address:
//
//	dev.vm ssh-ed25519 AAAA... banger:dev
//	10.42.0.5 ssh-ed25519 AAAA... banger:dev
//
// Lines without a "banger:" comment (a user's own, comments, blanks) are
// kept byte for byte. Use it through a pointer; the zero value with Path
// set is ready.
type KnownHosts struct {
	Path string
	mu   sync.Mutex
}

// Set records hostKey ("TYPE BASE64 [COMMENT]", the guest's
// /etc/ssh/ssh_host_ed25519_key.pub) for VM name at ip. It replaces the
// VM's earlier lines and any banger line for NAME.vm or ip left by another
// VM (names and addresses are reused). changed reports that the VM had a
// different key recorded; call Check first where that must be an error.
// An unchanged entry is not rewritten.
func (k *KnownHosts) Set(name string, ip netip.Addr, hostKey string) (changed bool, err error) {
	want, err := entries(name, ip, hostKey)
	if err != nil {
		return false, fmt.Errorf("add host key of %q: %w", name, err)
	}
	err = k.update(func(lines []line) ([]line, bool) {
		var kept, mine []line
		others := false
		wantKey := want[0].key()
		for _, l := range lines {
			switch {
			case l.owner == name:
				mine = append(mine, l)
				if l.key() != wantKey {
					changed = true
				}
			case l.owner != "" && l.isFor(name, ip):
				others = true
			default:
				kept = append(kept, l)
			}
		}
		if !others && sameLines(mine, want) {
			return nil, false
		}
		return append(kept, want...), true
	})
	if err != nil {
		return false, fmt.Errorf("add host key of %q: %w", name, err)
	}
	return changed, nil
}

// Check compares hostKey with what is recorded for VM name: nil when it
// matches or nothing is recorded, a *HostKeyChangedError otherwise.
func (k *KnownHosts) Check(name string, ip netip.Addr, hostKey string) error {
	want, err := entries(name, ip, hostKey)
	if err != nil {
		return fmt.Errorf("check host key of %q: %w", name, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	lines, err := k.read()
	if err != nil {
		return fmt.Errorf("check host key of %q: %w", name, err)
	}
	for _, l := range lines {
		if l.owner != name || l.key() == want[0].key() {
			continue
		}
		if !l.isFor(name, ip) {
			continue
		}
		known, _ := Fingerprint(l.key())
		got, _ := Fingerprint(want[0].key())
		return &HostKeyChangedError{Name: name, Known: known, Got: got}
	}
	return nil
}

// Remove drops VM name's lines and any banger line for NAME.vm or ip.
// Removing what is not there is not an error.
func (k *KnownHosts) Remove(name string, ip netip.Addr) error {
	err := k.update(func(lines []line) ([]line, bool) {
		kept := lines[:0:0]
		for _, l := range lines {
			if l.owner != "" && (l.owner == name || l.isFor(name, ip)) {
				continue
			}
			kept = append(kept, l)
		}
		return kept, len(kept) != len(lines)
	})
	if err != nil {
		return fmt.Errorf("remove host key of %q: %w", name, err)
	}
	return nil
}

// line is one line of the file: its text without the newline and, for
// banger's lines, the parsed fields.
type line struct {
	raw             string
	host, typ, blob string
	owner           string // VM name for banger's lines, else ""
}

func (l line) key() string { return l.typ + " " + l.blob }

// isFor reports whether the line's host is NAME.vm or ip.
func (l line) isFor(name string, ip netip.Addr) bool {
	return l.host == Host(name) || (ip.IsValid() && l.host == ip.Unmap().String())
}

func parseLine(raw string) line {
	l := line{raw: raw}
	f := strings.Fields(raw)
	if len(f) != 4 || strings.HasPrefix(f[0], "@") || strings.HasPrefix(f[0], "#") {
		return l
	}
	owner, ok := strings.CutPrefix(f[3], ownerPrefix)
	if !ok || config.ValidDNSLabel(owner) != nil {
		return l
	}
	l.host, l.typ, l.blob, l.owner = f[0], f[1], f[2], owner
	return l
}

// entries are the lines Set writes for a VM.
func entries(name string, ip netip.Addr, hostKey string) ([]line, error) {
	if err := config.ValidDNSLabel(name); err != nil {
		return nil, err
	}
	typ, blob, _, err := ParsePublic(hostKey)
	if err != nil {
		return nil, err
	}
	hosts := []string{Host(name)}
	if ip.IsValid() {
		hosts = append(hosts, ip.Unmap().String())
	}
	var out []line
	for _, h := range hosts {
		out = append(out, parseLine(h+" "+typ+" "+blob+" "+ownerPrefix+name))
	}
	return out, nil
}

func sameLines(a, b []line) bool {
	key := func(ls []line) []string {
		var s []string
		for _, l := range ls {
			s = append(s, l.raw)
		}
		slices.Sort(s)
		return s
	}
	return slices.Equal(key(a), key(b))
}

// read parses the file; a missing file is empty.
func (k *KnownHosts) read() ([]line, error) {
	b, err := os.ReadFile(k.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, nil
	}
	var lines []line
	for _, raw := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		lines = append(lines, parseLine(raw))
	}
	return lines, nil
}

// update runs edit on the file's lines under the lock and writes the result
// when edit says it changed.
func (k *KnownHosts) update(edit func([]line) ([]line, bool)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(k.Path), 0o700); err != nil {
		return err
	}
	unlock, err := lockDir(filepath.Dir(k.Path))
	if err != nil {
		return err
	}
	defer unlock()
	lines, err := k.read()
	if err != nil {
		return err
	}
	out, changed := edit(lines)
	if !changed {
		return nil
	}
	var b strings.Builder
	for _, l := range out {
		b.WriteString(l.raw)
		b.WriteByte('\n')
	}
	return atomicfile.Write(k.Path, []byte(b.String()), 0o644)
}
