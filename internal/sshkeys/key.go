// Package sshkeys is banger's ssh material: the key bangerd installs as
// root's only authorized key in every guest, the known_hosts file of the
// guests' host keys (learned through the guest agent, never on first use),
// the ssh argv `banger vm ssh` runs, and the ssh_config users Include so
// that plain `ssh NAME.vm` works.
//
// Everything here writes atomically (temp file, rename) and never touches a
// line or a file that is not banger's.
package sshkeys

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/banger/banger/internal/atomicfile"
	"github.com/banger/banger/internal/command"
	"golang.org/x/sys/unix"
)

// KeyComment is the comment of the key bangerd generates.
const KeyComment = "banger"

// EnsureKey returns the public half of the ed25519 key pair at path (private
// key at path, public key at path.pub), generating the pair first when
// there is none. ssh-keygen writes into a temporary directory beside path
// and the halves are renamed into place public first, under a lock on the
// directory: a concurrent caller, in this process or another, sees either
// no key or a whole one. A private key whose .pub is missing gets it back
// from `ssh-keygen -y`.
func EnsureKey(ctx context.Context, path string) (string, error) {
	if pub, err := LoadPublic(path); err == nil {
		return pub, nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create ssh key %s: %w", path, err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return "", fmt.Errorf("create ssh key %s: %w", path, err)
	}
	defer unlock()

	// Look again: another caller may have made it while we waited.
	pub, err := LoadPublic(path)
	if err == nil {
		return pub, nil
	}
	if _, statErr := os.Lstat(path); statErr == nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err // a .pub that is there but is not a key: not ours to replace
		}
		out, err := command.Output(ctx, "ssh-keygen", "-y", "-f", path)
		if err != nil {
			return "", fmt.Errorf("derive the public key of %s: %w", path, err)
		}
		if _, _, _, err := ParsePublic(string(out)); err != nil {
			return "", fmt.Errorf("derive the public key of %s: %w", path, err)
		}
		if err := atomicfile.Write(path+".pub", out, 0o644); err != nil {
			return "", err
		}
		return LoadPublic(path)
	} else if !errors.Is(statErr, fs.ErrNotExist) {
		return "", fmt.Errorf("create ssh key %s: %w", path, statErr)
	}

	tmp, err := os.MkdirTemp(dir, "."+filepath.Base(path)+".new-*")
	if err != nil {
		return "", fmt.Errorf("create ssh key %s: %w", path, err)
	}
	tmpKey := filepath.Join(tmp, "key")
	defer func() {
		// Only the names made here, one by one: never a recursive delete.
		os.Remove(tmpKey)
		os.Remove(tmpKey + ".pub")
		os.Remove(tmp)
	}()
	if err := command.Run(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", KeyComment, "-f", tmpKey); err != nil {
		return "", fmt.Errorf("create ssh key %s: %w", path, err)
	}
	// Public half first: whoever sees the private key sees its .pub too.
	if err := os.Rename(tmpKey+".pub", path+".pub"); err != nil {
		return "", fmt.Errorf("create ssh key %s: %w", path, err)
	}
	if err := os.Rename(tmpKey, path); err != nil {
		return "", fmt.Errorf("create ssh key %s: %w", path, err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return "", fmt.Errorf("create ssh key %s: %w", path, err)
	}
	return LoadPublic(path)
}

// LoadPublic returns the public key of the pair at path ("ssh-ed25519 AAAA...
// comment", one line, no newline). Both halves must exist; an error for a
// missing file wraps fs.ErrNotExist.
func LoadPublic(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("ssh key %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("ssh key %s: not a regular file", path)
	}
	b, err := os.ReadFile(path + ".pub")
	if err != nil {
		return "", fmt.Errorf("public key of %s: %w", path, err)
	}
	line := strings.TrimSpace(string(b))
	if _, _, _, err := ParsePublic(line); err != nil {
		return "", fmt.Errorf("public key %s.pub: %w", path, err)
	}
	return line, nil
}

// ParsePublic checks one public key line ("TYPE BASE64 [COMMENT]", as in
// a .pub file or authorized_keys without options) and returns its parts.
// The base64 blob must decode and name the same key type.
func ParsePublic(line string) (keyType, blob, comment string, err error) {
	line = strings.TrimSpace(line)
	if strings.ContainsAny(line, "\r\n") {
		return "", "", "", fmt.Errorf("public key: more than one line")
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return "", "", "", fmt.Errorf("public key %q: want \"TYPE BASE64 [COMMENT]\"", line)
	}
	raw, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return "", "", "", fmt.Errorf("public key of type %s: bad base64: %w", f[0], err)
	}
	if len(raw) < 4 {
		return "", "", "", fmt.Errorf("public key of type %s: blob too short", f[0])
	}
	n := binary.BigEndian.Uint32(raw)
	if uint64(n) > uint64(len(raw)-4) || !bytes.Equal(raw[4:4+n], []byte(f[0])) {
		return "", "", "", fmt.Errorf("public key of type %s: the blob is not a %s key", f[0], f[0])
	}
	if len(f) > 2 {
		comment = strings.Join(f[2:], " ")
	}
	return f[0], f[1], comment, nil
}

// Fingerprint is the SHA256 fingerprint of a public key line, as
// `ssh-keygen -l` prints it ("SHA256:...").
func Fingerprint(line string) (string, error) {
	_, blob, _, err := ParsePublic(line)
	if err != nil {
		return "", err
	}
	raw, _ := base64.StdEncoding.DecodeString(blob)
	sum := sha256.Sum256(raw)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:]), nil
}

// lockDir takes an exclusive flock on dir until the returned func runs.
// Each call opens its own descriptor, so it excludes goroutines of this
// process as well as other processes.
func lockDir(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
