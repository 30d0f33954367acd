package sshkeys

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger/banger/internal/api"
	"github.com/google/go-cmp/cmp"
)

func TestCommand(t *testing.T) {
	base := []string{"ssh",
		"-i", "/var/lib/banger/ssh/id_ed25519",
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=/var/lib/banger/ssh/known_hosts",
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UpdateHostKeys=no",
		"-o", "HostKeyAlias=dev.vm",
		"-o", "User=root",
		"-o", "LogLevel=ERROR",
		"10.42.0.5"}
	info := api.SSHInfo{Name: "dev", IP: "10.42.0.5", KeyPath: "/var/lib/banger/ssh/id_ed25519", KnownHosts: "/var/lib/banger/ssh/known_hosts", Running: true}
	tests := []struct {
		name  string
		edit  func(*api.SSHInfo)
		extra []string
		want  []string
	}{
		{name: "plain", want: base},
		{name: "extra args follow the destination", extra: []string{"-L", "8080:localhost:80", "uname", "-a"},
			want: append(append([]string{}, base...), "-L", "8080:localhost:80", "uname", "-a")},
		{name: "user from the daemon", edit: func(i *api.SSHInfo) { i.User = "dev" },
			want: replace(base, "User=root", "User=dev")},
		{name: "paths with space and percent", edit: func(i *api.SSHInfo) { i.KnownHosts = "/srv/my state/100%/known_hosts" },
			want: replace(base, "UserKnownHostsFile=/var/lib/banger/ssh/known_hosts", `UserKnownHostsFile="/srv/my state/100%%/known_hosts"`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := info
			if tt.edit != nil {
				tt.edit(&i)
			}
			if diff := cmp.Diff(tt.want, Command(i, tt.extra)); diff != "" {
				t.Errorf("argv (-want +got):\n%s", diff)
			}
		})
	}
}

func replace(argv []string, old, new string) []string {
	out := append([]string{}, argv...)
	for i := range out {
		if out[i] == old {
			out[i] = new
		}
	}
	return out
}

// needSSH skips a test that runs the real ssh client when it is absent.
func needSSH(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		if os.Getenv("BANGER_E2E") == "1" {
			t.Fatal("ssh not found (install openssh-client)")
		}
		t.Skip("ssh not found (install openssh-client)")
	}
}

// sshG runs `ssh -G` (print the effective configuration, connect nowhere)
// with HOME isolated and returns the settings asked for, "key value" each.
func sshG(t *testing.T, args []string, keys ...string) []string {
	t.Helper()
	needSSH(t)
	home := t.TempDir()
	cmd := exec.Command("ssh", append([]string{"-G"}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+home)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ssh -G %s: %v", strings.Join(args, " "), err)
	}
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	var got []string
	for _, l := range strings.Split(string(out), "\n") {
		if k, _, _ := strings.Cut(l, " "); want[k] {
			got = append(got, l)
		}
	}
	return got
}

// TestCommandAsSSHReadsIt checks the argv with the real ssh client: every
// option takes effect, options after the destination are still options,
// and a path with a space survives.
func TestCommandAsSSHReadsIt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "my state")
	os.MkdirAll(dir, 0o700)
	key := filepath.Join(dir, "id_ed25519")
	os.WriteFile(key, []byte("not used by ssh -G\n"), 0o600)
	kh := filepath.Join(dir, "known_hosts")
	argv := Command(api.SSHInfo{Name: "dev", IP: "10.42.0.5", KeyPath: key, KnownHosts: kh}, []string{"-p", "2222", "-L", "8080:localhost:80", "uname"})
	got := sshG(t, append([]string{"-F", "/dev/null"}, argv[1:]...),
		"user", "hostname", "port", "identityfile", "identitiesonly", "userknownhostsfile", "globalknownhostsfile",
		"stricthostkeychecking", "updatehostkeys", "hostkeyalias", "loglevel", "localforward")
	want := []string{
		"user root",
		"hostname 10.42.0.5",
		"port 2222",
		"identitiesonly yes",
		"stricthostkeychecking true",
		"updatehostkeys false",
		"hostkeyalias dev.vm",
		"loglevel ERROR",
		"localforward 8080 [localhost]:80",
		"identityfile " + key,
		"globalknownhostsfile /dev/null",
		"userknownhostsfile " + kh,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ssh -G (-want +got):\n%s", diff)
	}
}
