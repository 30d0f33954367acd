package sshkeys

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banger/banger/internal/api"
)

// findSSHD looks for sshd on PATH, then where Debian puts it.
func findSSHD() string {
	if p, err := exec.LookPath("sshd"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err == nil {
		return "/usr/sbin/sshd"
	}
	return ""
}

// TestRealSSHD logs in to a real sshd on 127.0.0.1 with the argv of
// Command, the key of EnsureKey and the known_hosts of KnownHosts: the
// recorded key lets ssh in under strict checking, a different host key and
// a removed entry both keep it out. As root, sshd runs as nobody.
func TestRealSSHD(t *testing.T) {
	needSSH(t)
	sshd := findSSHD()
	if sshd == "" {
		if os.Getenv("BANGER_E2E") == "1" {
			t.Fatal("sshd not found (install openssh-server)")
		}
		t.Skip("sshd not found (install openssh-server)")
	}
	dir, err := os.MkdirTemp("", "banger-sshd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)

	uid, gid := os.Getuid(), os.Getgid()
	loginUser := ""
	if uid == 0 {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Skip("no user nobody to run sshd as")
		}
		loginUser = "nobody"
		uid, _ = strconv.Atoi(nobody.Uid)
		gid, _ = strconv.Atoi(nobody.Gid)
	} else {
		me, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		loginUser = me.Username
	}

	hostKey := newKey(t, dir, "host_key")
	otherHostKey := newKey(t, t.TempDir(), "other_host_key")
	os.Chown(hostKey, uid, gid)
	key := filepath.Join(t.TempDir(), "ssh", "id_ed25519")
	pub, err := EnsureKey(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(dir, "authorized_keys")
	os.WriteFile(auth, []byte(pub+"\n"), 0o644)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := filepath.Join(dir, "sshd_config")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`ListenAddress 127.0.0.1:%d
HostKey %s
AuthorizedKeysFile %s
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PidFile none
`, port, hostKey, auth)), 0o644)
	logFile, err := os.Create(filepath.Join(t.TempDir(), "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	sshdLog := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	cmd := exec.Command(sshd, "-D", "-e", "-f", cfg)
	cmd.Stderr = logFile
	if uid != os.Getuid() {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen: %s", sshdLog())
		}
		time.Sleep(50 * time.Millisecond)
	}

	kh := &KnownHosts{Path: filepath.Join(filepath.Dir(key), "known_hosts")}
	info := api.SSHInfo{Name: "dev", IP: "127.0.0.1", User: loginUser, KeyPath: key, KnownHosts: kh.Path, Running: true}
	login := func() (int, string) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		argv := Command(info, []string{"-p", strconv.Itoa(port), "-o", "BatchMode=yes", "true"})
		c := exec.CommandContext(ctx, argv[0], argv[1:]...)
		c.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := c.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	// hostKeyOK: ssh accepted the server's key. The login must succeed too
	// (255 is ssh's own failure), unless sshd refuses the account itself
	// after the key exchange (nobody's is locked).
	hostKeyOK := func(code int, out string) bool {
		if strings.Contains(out, "Host key verification failed") {
			return false
		}
		return code != 255 || (strings.Contains(out, "Permission denied") && strings.Contains(sshdLog(), "account is locked"))
	}

	ip := netip.MustParseAddr("127.0.0.1")
	if _, err := kh.Set("dev", ip, readPub(t, hostKey)); err != nil {
		t.Fatal(err)
	}
	if code, out := login(); !hostKeyOK(code, out) {
		t.Fatalf("with the recorded host key: exit %d: %s\nsshd: %s", code, out, sshdLog())
	}
	if _, err := kh.Set("dev", ip, readPub(t, otherHostKey)); err != nil {
		t.Fatal(err)
	}
	if code, out := login(); hostKeyOK(code, out) {
		t.Errorf("with another host key recorded: exit %d: %s", code, out)
	}
	if err := kh.Remove("dev", ip); err != nil {
		t.Fatal(err)
	}
	if code, out := login(); hostKeyOK(code, out) {
		t.Errorf("with no host key recorded: exit %d: %s", code, out)
	}
}
