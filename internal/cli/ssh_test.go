package cli

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/paths"
	"github.com/banger/banger/internal/sshkeys"
	"github.com/banger/banger/internal/wire"
	"github.com/google/go-cmp/cmp"
)

// sshTestApp is testApp with HOME and XDG_CONFIG_HOME pointing inside the
// test, so nothing can reach the real ~/.ssh or ~/.config.
func sshTestApp(t *testing.T) *App {
	t.Helper()
	a := testApp(t)
	t.Setenv("HOME", a.Home)
	t.Setenv("XDG_CONFIG_HOME", "")
	return a
}

// sshDaemon is a fake bangerd answering the ssh routes: VM "dev" runs at
// 127.0.0.1, "off" is stopped, anything else is not found.
func sshDaemon(t *testing.T, a *App, f *fakeDaemon) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/ssh", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		wire.WriteJSON(w, 200, api.SSHPaths{KeyPath: "/var/lib/banger/ssh/id_ed25519", KnownHosts: "/var/lib/banger/ssh/known_hosts"})
	})
	mux.HandleFunc("GET /v1/vms/{name}/ssh", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		name := r.PathValue("name")
		if name != "dev" && name != "off" {
			wire.WriteError(w, api.Errorf(api.CodeNotFound, "vm %q not found", name), "")
			return
		}
		wire.WriteJSON(w, 200, api.SSHInfo{Name: name, IP: "127.0.0.1", User: "root",
			KeyPath: "/var/lib/banger/ssh/id_ed25519", KnownHosts: "/var/lib/banger/ssh/known_hosts", Running: name == "dev"})
	})
	mux.HandleFunc("GET /v1/vms/{name}", func(w http.ResponseWriter, r *http.Request) {
		f.record(r)
		name := r.PathValue("name")
		state := map[string]string{"dev": api.StateRunning, "off": api.StateStopped}[name]
		if state == "" {
			wire.WriteError(w, api.Errorf(api.CodeNotFound, "vm %q not found", name), "")
			return
		}
		wire.WriteJSON(w, 200, api.VM{Name: name, State: state, IP: netip.MustParseAddr("127.0.0.1")})
	})
	serveFake(t, a, mux)
}

func TestSSHConfigCmd(t *testing.T) {
	const userHosts = "Host work\n\tUser alice"
	tests := []struct {
		name    string
		before  *string // ~/.ssh/config before; nil: absent
		args    [][]string
		wantOut string   // stdout of the last command
		after   *string  // ~/.ssh/config after every command; nil: absent
		calls   []string // daemon requests
	}{
		{
			name:    "no flag prints the Include line",
			args:    [][]string{{"ssh-config"}},
			wantOut: "Include ~/.config/banger/ssh_config\n",
			calls:   []string{"GET /v1/ssh"},
		},
		{
			name:    "install then uninstall: absent stays absent",
			args:    [][]string{{"ssh-config", "--install"}, {"ssh-config", "--uninstall"}},
			wantOut: "removed banger's Include from ~/.ssh/config\n",
			calls:   []string{"GET /v1/ssh"},
		},
		{
			name:    "install then uninstall: byte for byte",
			before:  ptrTo(userHosts),
			args:    [][]string{{"ssh-config", "--install"}, {"ssh-config", "--install"}, {"ssh-config", "--uninstall"}},
			after:   ptrTo(userHosts),
			wantOut: "removed banger's Include from ~/.ssh/config\n",
			calls:   []string{"GET /v1/ssh", "GET /v1/ssh"},
		},
		{
			name:    "uninstall without a block",
			before:  ptrTo(userHosts),
			args:    [][]string{{"ssh-config", "--uninstall"}},
			after:   ptrTo(userHosts),
			wantOut: "~/.ssh/config has no banger block; nothing to do\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := sshTestApp(t)
			f := &fakeDaemon{}
			sshDaemon(t, a, f)
			userSSH := filepath.Join(a.Home, ".ssh", "config")
			if tt.before != nil {
				writeFile(t, userSSH, *tt.before)
			}
			var out string
			for _, args := range tt.args {
				a.Out.(*bytes.Buffer).Reset()
				code, stdout, stderr := run(t, a, args...)
				if code != 0 {
					t.Fatalf("banger %s: exit %d: %s", strings.Join(args, " "), code, stderr)
				}
				out = stdout
			}
			if diff := cmp.Diff(tt.wantOut, out); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			want := "<absent>"
			if tt.after != nil {
				want = *tt.after
			}
			if diff := cmp.Diff(want, readOrAbsentFile(t, userSSH)); diff != "" {
				t.Errorf("~/.ssh/config (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.calls, f.requests); diff != "" {
				t.Errorf("daemon requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSSHConfigWritesBangerConfig(t *testing.T) {
	a := sshTestApp(t)
	sshDaemon(t, a, &fakeDaemon{})
	if code, _, stderr := run(t, a, "ssh-config", "--install"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	self, _ := os.Executable()
	want, _ := sshkeys.UserConfig{KeyPath: "/var/lib/banger/ssh/id_ed25519", KnownHosts: "/var/lib/banger/ssh/known_hosts", Banger: self}.Render()
	got := readOrAbsentFile(t, paths.User{Home: a.Home}.SSHConfig())
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("~/.config/banger/ssh_config (-want +got):\n%s", diff)
	}
	inc := readOrAbsentFile(t, filepath.Join(a.Home, ".ssh", "config"))
	if !strings.HasPrefix(inc, "# >>> banger >>>\n") || !strings.Contains(inc, "\nInclude ~/.config/banger/ssh_config\n") {
		t.Errorf("~/.ssh/config:\n%s", inc)
	}
}

func TestSSHConfigDaemonDown(t *testing.T) {
	tests := [][]string{{"ssh-config"}, {"ssh-config", "--install"}}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			a := sshTestApp(t)
			code, _, stderr := run(t, a, args...)
			if code != 1 || !strings.Contains(stderr, "bangerd is not running") {
				t.Fatalf("exit %d, stderr %q; want 1 and bangerd is not running", code, stderr)
			}
			for _, p := range []string{filepath.Join(a.Home, ".ssh"), paths.User{Home: a.Home}.SSHConfig()} {
				if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s was created", p)
				}
			}
		})
	}
	t.Run("uninstall needs no daemon", func(t *testing.T) {
		a := sshTestApp(t)
		p := writeFile(t, filepath.Join(a.Home, ".ssh", "config"), "# >>> banger >>>\nInclude x\n# <<< banger <<<\nHost a\n")
		if code, _, stderr := run(t, a, "ssh-config", "--uninstall"); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if got := readOrAbsentFile(t, p); got != "Host a\n" {
			t.Errorf("~/.ssh/config = %q", got)
		}
	})
	t.Run("install and uninstall together", func(t *testing.T) {
		a := sshTestApp(t)
		if code, _, stderr := run(t, a, "ssh-config", "--install", "--uninstall"); code != 1 || !strings.Contains(stderr, "none of the others can be") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
}

// fakeSSH puts an ssh on PATH that writes its argv, one per line, to the
// returned file, copies stdin to stdout and exits with status.
func fakeSSH(t *testing.T, status string) string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "argv")
	script := "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" > '" + log + "'\ncat\nexit " + status + "\n"
	if err := os.WriteFile(filepath.Join(dir, "ssh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return log
}

func TestVMSSH(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		status string
		code   int
		argv   []string // what ssh got after its name; nil: not run
		stderr string
	}{
		{name: "session", args: []string{"vm", "ssh", "dev"}, status: "0",
			argv: sshkeys.Command(api.SSHInfo{Name: "dev", IP: "127.0.0.1", KeyPath: "/var/lib/banger/ssh/id_ed25519", KnownHosts: "/var/lib/banger/ssh/known_hosts"}, nil)[1:]},
		{name: "extra args and ssh's status", args: []string{"vm", "ssh", "dev", "--", "-t", "sh", "-c", "exit 3"}, status: "3", code: 3,
			argv: sshkeys.Command(api.SSHInfo{Name: "dev", IP: "127.0.0.1", KeyPath: "/var/lib/banger/ssh/id_ed25519", KnownHosts: "/var/lib/banger/ssh/known_hosts"}, []string{"-t", "sh", "-c", "exit 3"})[1:]},
		{name: "not running", args: []string{"vm", "ssh", "off"}, status: "0", code: 1,
			stderr: "error: vm \"off\" is not running\nhint: start it: banger vm start off\n"},
		{name: "unknown vm", args: []string{"vm", "ssh", "nope"}, status: "0", code: 1, stderr: "error: vm \"nope\" not found\n"},
		{name: "args without --", args: []string{"vm", "ssh", "dev", "uname"}, status: "0", code: 1,
			stderr: "error: put ssh arguments after --\nhint: banger vm ssh NAME -- [SSH_ARG...]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := sshTestApp(t)
			sshDaemon(t, a, &fakeDaemon{})
			log := fakeSSH(t, tt.status)
			a.In = strings.NewReader("typed into the session\n")
			code, stdout, stderr := run(t, a, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if tt.stderr != "" || code == 0 {
				if diff := cmp.Diff(tt.stderr, stderr); diff != "" {
					t.Errorf("stderr (-want +got):\n%s", diff)
				}
			}
			b, err := os.ReadFile(log)
			if tt.argv == nil {
				if err == nil {
					t.Errorf("ssh ran: %s", b)
				}
				return
			}
			if err != nil {
				t.Fatalf("ssh did not run: %v", err)
			}
			lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			if filepath.Base(lines[0]) != "ssh" {
				t.Errorf("argv[0] = %q", lines[0])
			}
			if diff := cmp.Diff(tt.argv, lines[1:]); diff != "" {
				t.Errorf("ssh argv (-want +got):\n%s", diff)
			}
			if stdout != "typed into the session\n" {
				t.Errorf("stdin did not reach ssh's: stdout %q", stdout)
			}
		})
	}
}

// TestVMSSHRealClientStatus runs the real ssh against a closed port: ssh
// fails to connect and exits 255, which must be banger's status.
func TestVMSSHRealClientStatus(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("ssh not found (install openssh-client)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	a := sshTestApp(t)
	sshDaemon(t, a, &fakeDaemon{})
	code, _, stderr := run(t, a, "vm", "ssh", "dev", "--", "-p", strconv.Itoa(port), "-o", "ConnectTimeout=5", "true")
	if code != 255 || !strings.Contains(stderr, "onnection refused") {
		t.Errorf("exit %d, stderr %q; want 255 and ssh's connection refused (port %d)", code, stderr, port)
	}
}

func TestVMProxy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c) // until the proxy half-closes
		c.Write(append([]byte("echo: "), b...))
	}()
	port := strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:")

	tests := []struct {
		name, host, port string
		code             int
		stdout, stderr   string
	}{
		{name: "NAME.vm", host: "dev.vm", port: port, stdout: "echo: SSH-2.0-client\n"},
		{name: "stopped", host: "off.vm", port: port, code: 1, stderr: "error: vm \"off\" is stopped, not running\nhint: start it: banger vm start off\n"},
		{name: "bad port", host: "dev.vm", port: "ssh", code: 1, stderr: "error: port \"ssh\": want 1-65535\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := sshTestApp(t)
			sshDaemon(t, a, &fakeDaemon{})
			a.In = strings.NewReader("SSH-2.0-client\n")
			code, stdout, stderr := run(t, a, "vm", "proxy", tt.host, tt.port)
			if diff := cmp.Diff([]any{tt.code, tt.stdout, tt.stderr}, []any{code, stdout, stderr}); diff != "" {
				t.Errorf("exit, stdout, stderr (-want +got):\n%s", diff)
			}
		})
	}
}

func ptrTo(s string) *string { return &s }

func readOrAbsentFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "<absent>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
