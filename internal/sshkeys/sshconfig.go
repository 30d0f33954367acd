package sshkeys

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/banger/banger/internal/atomicfile"
)

// UserConfig is the ssh_config banger maintains for users to Include
// (~/.config/banger/ssh_config): `ssh NAME.vm` reaches a running VM through
// `banger vm proxy`, with banger's key and known_hosts.
type UserConfig struct {
	KeyPath    string
	KnownHosts string
	// Banger is the absolute path of the banger binary (the ProxyCommand).
	Banger string
}

// Render returns the file's content.
func (c UserConfig) Render() ([]byte, error) {
	for _, v := range []struct{ what, path string }{{"key", c.KeyPath}, {"known_hosts", c.KnownHosts}, {"banger binary", c.Banger}} {
		if !filepath.IsAbs(v.path) {
			return nil, fmt.Errorf("ssh config: %s path %q is not absolute", v.what, v.path)
		}
		if strings.ContainsAny(v.path, "\"\n\r") {
			return nil, fmt.Errorf("ssh config: %s path %q holds a quote or a newline", v.what, v.path)
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `# Written by banger ssh-config; it is rewritten, do not edit.
# Included from ~/.ssh/config so that "ssh NAME.vm" reaches a running VM.
Host *.vm
	User %s
	IdentityFile %s
	IdentitiesOnly yes
	UserKnownHostsFile %s
	StrictHostKeyChecking yes
	UpdateHostKeys no
	ProxyCommand %s vm proxy %%h %%p
`, DefaultUser, configValue(escapeTokens(c.KeyPath)), configValue(escapeTokens(c.KnownHosts)), escapeTokens(shellQuote(c.Banger)))
	return b.Bytes(), nil
}

// shellQuote quotes s for the /bin/sh that runs a ProxyCommand.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// The fence around banger's lines in ~/.ssh/config.
const (
	beginMarker = "# >>> banger >>>"
	endMarker   = "# <<< banger <<<"
	noteAdded   = "# Added by banger ssh-config --install; banger ssh-config --uninstall removes it."
	// noteCreated marks a block in a file --install created: --uninstall
	// removes the file again when nothing else was added to it.
	noteCreated = "# Added by banger ssh-config --install, which created this file; banger ssh-config --uninstall removes it."
)

// IncludeLine is the line that pulls path into an ssh config, written
// with ~/ when path is under home.
func IncludeLine(path, home string) string {
	if rel, err := filepath.Rel(home, path); err == nil && home != "" && filepath.IsLocal(rel) {
		path = "~/" + filepath.ToSlash(rel)
	}
	return "Include " + configValue(path)
}

// InstallInclude puts include (a line such as IncludeLine's) inside banger's
// marker-fenced block at the top of the ssh config at path: ssh applies an
// Include globally only before the first Host or Match. It creates the file
// (0600) and its directory (0700) when missing and follows a symlinked
// file. A block already there is updated in place; changed is false when it
// already said the same.
func InstallInclude(path, include string) (changed bool, err error) {
	target, data, mode, existed, err := readConfig(path)
	if err != nil {
		return false, fmt.Errorf("add banger's Include to %s: %w", path, err)
	}
	out, changed, err := installBlock(data, existed, include)
	if err != nil || !changed {
		if err != nil {
			err = fmt.Errorf("add banger's Include to %s: %w", path, err)
		}
		return false, err
	}
	if !existed {
		if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
			return false, fmt.Errorf("add banger's Include to %s: %w", path, err)
		}
	}
	if err := atomicfile.Write(target, out, mode); err != nil {
		return false, fmt.Errorf("add banger's Include to %s: %w", path, err)
	}
	return true, nil
}

// UninstallInclude removes banger's block from the ssh config at path and
// nothing else, leaving the file as it was before InstallInclude: byte for
// byte, and absent if InstallInclude created it (and nothing was added
// since). changed is false when there was no block.
func UninstallInclude(path string) (changed bool, err error) {
	target, data, mode, existed, err := readConfig(path)
	if err != nil || !existed {
		if err != nil {
			err = fmt.Errorf("remove banger's Include from %s: %w", path, err)
		}
		return false, err
	}
	out, found, created, err := removeBlock(data)
	if err != nil {
		return false, fmt.Errorf("remove banger's Include from %s: %w", path, err)
	}
	if !found {
		return false, nil
	}
	if created && len(out) == 0 {
		if err := os.Remove(target); err != nil {
			return false, fmt.Errorf("remove banger's Include from %s: %w", path, err)
		}
		return true, nil
	}
	if err := atomicfile.Write(target, out, mode); err != nil {
		return false, fmt.Errorf("remove banger's Include from %s: %w", path, err)
	}
	return true, nil
}

// readConfig reads the file at path, following a symlink so that a rewrite
// replaces the link's target, not the link.
func readConfig(path string) (target string, data []byte, mode os.FileMode, existed bool, err error) {
	target = path
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if target, err = filepath.EvalSymlinks(path); err != nil {
			return "", nil, 0, false, err
		}
	}
	fi, err := os.Stat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return target, nil, 0o600, false, nil
	}
	if err != nil {
		return "", nil, 0, false, err
	}
	if !fi.Mode().IsRegular() {
		return "", nil, 0, false, fmt.Errorf("not a regular file")
	}
	data, err = os.ReadFile(target)
	return target, data, fi.Mode().Perm(), true, err
}

func block(include string, created bool) string {
	note := noteAdded
	if created {
		note = noteCreated
	}
	return beginMarker + "\n" + note + "\n" + include + "\n" + endMarker + "\n"
}

// installBlock returns data with banger's block: replaced in place when
// there is one, else prepended.
func installBlock(data []byte, existed bool, include string) ([]byte, bool, error) {
	start, end, found, err := findBlock(data)
	if err != nil {
		return nil, false, err
	}
	if !found {
		return append([]byte(block(include, !existed)), data...), true, nil
	}
	old := data[start:end]
	created := bytes.Contains(old, []byte(noteCreated))
	nb := block(include, created)
	if !bytes.HasSuffix(old, []byte("\n")) {
		nb = strings.TrimSuffix(nb, "\n") // the block ended the file without a newline
	}
	if string(old) == nb {
		return data, false, nil
	}
	out := append([]byte{}, data[:start]...)
	out = append(out, nb...)
	return append(out, data[end:]...), true, nil
}

// removeBlock returns data without banger's block and whether the block said
// banger created the file.
func removeBlock(data []byte) (out []byte, found, created bool, err error) {
	start, end, found, err := findBlock(data)
	if err != nil || !found {
		return data, false, false, err
	}
	created = bytes.Contains(data[start:end], []byte(noteCreated))
	out = append([]byte{}, data[:start]...)
	return append(out, data[end:]...), true, created, nil
}

// findBlock locates banger's block: from the begin marker line through the
// end marker line and its newline. Marker lines must match exactly (a
// trailing \r allowed); a begin without an end is an error, not a guess.
func findBlock(data []byte) (start, end int, found bool, err error) {
	start = -1
	off := 0
	for n := 1; off < len(data); n++ {
		i := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if i >= 0 {
			next = off + i + 1
		}
		l := strings.TrimRight(string(data[off:next]), "\r\n")
		switch {
		case l == beginMarker && start >= 0:
			return 0, 0, false, fmt.Errorf("line %d: a second %q before %q; fix the file by hand", n, beginMarker, endMarker)
		case l == beginMarker:
			start = off
		case l == endMarker && start >= 0:
			return start, next, true, nil
		case l == endMarker:
			return 0, 0, false, fmt.Errorf("line %d: %q without %q before it; fix the file by hand", n, endMarker, beginMarker)
		}
		off = next
	}
	if start >= 0 {
		return 0, 0, false, fmt.Errorf("%q without %q; fix the file by hand", beginMarker, endMarker)
	}
	return 0, 0, false, nil
}
