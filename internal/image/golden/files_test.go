package golden

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The guest-facing contract, spelled out independently of the constants.
func TestSSHDropIn(t *testing.T) {
	want := "# banger: guests are single-user sandboxes reached only with the owner's key.\n" +
		"PermitRootLogin prohibit-password\n" +
		"PubkeyAuthentication yes\n" +
		"PasswordAuthentication no\n" +
		"KbdInteractiveAuthentication no\n" +
		"AuthorizedKeysFile /root/.ssh/authorized_keys\n" +
		"# One ed25519 host key per VM: generating RSA keys costs ~10 s of a boot\n" +
		"# under software emulation, and banger pins the ed25519 key anyway.\n" +
		"HostKey /etc/ssh/ssh_host_ed25519_key\n"
	got := fileAt(t, SSHDropIn)
	if diff := cmp.Diff(want, got.Content); diff != "" {
		t.Errorf("sshd drop-in (-want +got):\n%s", diff)
	}
	if got.Mode != 0o644 {
		t.Errorf("sshd drop-in mode %o", got.Mode)
	}
}

func TestKeygenUnit(t *testing.T) {
	want := `[Unit]
Description=Generate this VM's SSH host keys
Before=ssh.service ssh.socket
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=ssh.service ssh.socket
`
	got := fileAt(t, "/etc/systemd/system/"+KeygenUnit)
	if diff := cmp.Diff(want, got.Content); diff != "" {
		t.Errorf("keygen unit (-want +got):\n%s", diff)
	}
	if !containsString(enabledUnits(), KeygenUnit) {
		t.Errorf("keygen unit not enabled: %v", enabledUnits())
	}
}

func TestIdentityFilesEmpty(t *testing.T) {
	for _, p := range []string{"/etc/machine-id", "/etc/fstab", "/etc/resolv.conf"} {
		if got := fileAt(t, p); got.Content != "" {
			t.Errorf("%s = %q, want empty", p, got.Content)
		}
	}
}

func fileAt(t *testing.T, path string) file {
	t.Helper()
	for _, f := range rootFiles() {
		if f.Path == path {
			return f
		}
	}
	t.Fatalf("no %s in rootFiles", path)
	return file{}
}

func containsString(list []string, s string) bool { return contains(list, s) }

// writeRootFile must replace a symlink, not write through it: seen from the
// host, the image's absolute symlinks point into the host.
func TestWriteRootFilesReplacesSymlinks(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	hostFile := filepath.Join(outside, "resolv.conf")
	if err := os.WriteFile(hostFile, []byte("nameserver 192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustMkdir(t, filepath.Join(root, "etc"))
	if err := os.Symlink(hostFile, filepath.Join(root, "etc", "resolv.conf")); err != nil {
		t.Fatal(err)
	}
	for _, f := range rootFiles() {
		if err := writeRootFile(root, f); err != nil {
			t.Fatalf("write %s: %v", f.Path, err)
		}
	}
	if b, _ := os.ReadFile(hostFile); string(b) != "nameserver 192.0.2.1\n" {
		t.Errorf("host file changed to %q", b)
	}
	for _, f := range rootFiles() {
		p := filepath.Join(root, f.Path)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != fs.FileMode(f.Mode) {
			t.Errorf("%s: mode %s, want regular %o", f.Path, fi.Mode(), f.Mode)
		}
		if b, _ := os.ReadFile(p); string(b) != f.Content {
			t.Errorf("%s = %q, want %q", f.Path, b, f.Content)
		}
	}
}

func TestWriteRootFileRefusesSymlinkedDir(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "etc")); err != nil {
		t.Fatal(err)
	}
	if err := writeRootFile(root, file{"/etc/hostname", 0o644, "x\n"}); err == nil {
		t.Fatal("wrote through a symlinked directory")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("files appeared outside the root: %v", entries)
	}
}

func mustMkdir(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	mustMkdir(t, filepath.Dir(path))
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
