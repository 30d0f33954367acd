package sshkeys

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const include = "Include ~/.config/banger/ssh_config"

const wantBlock = "# >>> banger >>>\n" + noteAdded + "\n" + include + "\n# <<< banger <<<\n"

func TestRenderUserConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  UserConfig
		want string // the lines after the header
		err  string
	}{
		{
			name: "plain paths",
			cfg:  UserConfig{KeyPath: "/var/lib/banger/ssh/id_ed25519", KnownHosts: "/var/lib/banger/ssh/known_hosts", Banger: "/usr/local/bin/banger"},
			want: "Host *.vm\n\tUser root\n\tIdentityFile /var/lib/banger/ssh/id_ed25519\n\tIdentitiesOnly yes\n" +
				"\tUserKnownHostsFile /var/lib/banger/ssh/known_hosts\n\tStrictHostKeyChecking yes\n\tUpdateHostKeys no\n" +
				"\tProxyCommand /usr/local/bin/banger vm proxy %h %p\n",
		},
		{
			name: "space, percent and quote",
			cfg:  UserConfig{KeyPath: "/srv/my state/id", KnownHosts: "/srv/100%/kh", Banger: "/opt/it's here/banger"},
			want: "Host *.vm\n\tUser root\n\tIdentityFile \"/srv/my state/id\"\n\tIdentitiesOnly yes\n" +
				"\tUserKnownHostsFile /srv/100%%/kh\n\tStrictHostKeyChecking yes\n\tUpdateHostKeys no\n" +
				"\tProxyCommand '/opt/it'\\''s here/banger' vm proxy %h %p\n",
		},
		{name: "relative", cfg: UserConfig{KeyPath: "id", KnownHosts: "/kh", Banger: "/b"}, err: "not absolute"},
		{name: "newline", cfg: UserConfig{KeyPath: "/id\nHost *", KnownHosts: "/kh", Banger: "/b"}, err: "newline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.cfg.Render()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Render error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_, body, _ := strings.Cut(string(b), "Host *.vm")
			if diff := cmp.Diff(tt.want, "Host *.vm"+body); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestUserConfigAsSSHReadsIt includes the rendered file from an ssh config
// that has Host blocks of its own, installed by InstallInclude, and asks
// the real ssh what it would do for dev.vm and for another host.
func TestUserConfigAsSSHReadsIt(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "id_ed25519")
	os.WriteFile(key, nil, 0o600)
	kh := filepath.Join(dir, "known_hosts")
	b, err := UserConfig{KeyPath: key, KnownHosts: kh, Banger: "/usr/local/bin/banger"}.Render()
	if err != nil {
		t.Fatal(err)
	}
	inc := filepath.Join(dir, "banger_ssh_config")
	os.WriteFile(inc, b, 0o644)
	user := filepath.Join(dir, ".ssh", "config")
	os.MkdirAll(filepath.Dir(user), 0o700)
	os.WriteFile(user, []byte("Host work\n\tUser alice\n\tPort 2200\n"), 0o600)
	if _, err := InstallInclude(user, IncludeLine(inc, "")); err != nil {
		t.Fatal(err)
	}
	keys := []string{"user", "hostname", "port", "identityfile", "identitiesonly", "userknownhostsfile", "stricthostkeychecking", "proxycommand"}
	got := sshG(t, []string{"-F", user, "dev.vm"}, keys...)
	want := []string{
		"user root",
		"hostname dev.vm",
		"port 22",
		"identitiesonly yes",
		"stricthostkeychecking true",
		"identityfile " + key,
		"userknownhostsfile " + kh,
		"proxycommand /usr/local/bin/banger vm proxy %h %p",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ssh -G dev.vm (-want +got):\n%s", diff)
	}
	got = sshG(t, []string{"-F", user, "work"}, "user", "port", "proxycommand")
	if diff := cmp.Diff([]string{"user alice", "port 2200"}, got); diff != "" {
		t.Errorf("ssh -G work, a host of the user's (-want +got):\n%s", diff)
	}
}

// TestIncludeRoundTrip: install then uninstall leaves ~/.ssh/config as it
// was, byte for byte, and absent when it was absent.
func TestIncludeRoundTrip(t *testing.T) {
	const hosts = "Host work\n\tUser alice\n\nHost *\n\tServerAliveInterval 30\n"
	tests := []struct {
		name      string
		before    *string // nil: no file
		installed string  // the file after install
	}{
		{name: "absent", before: nil,
			installed: "# >>> banger >>>\n" + noteCreated + "\n" + include + "\n# <<< banger <<<\n"},
		{name: "empty", before: ptr(""), installed: wantBlock},
		{name: "host blocks", before: ptr(hosts), installed: wantBlock + hosts},
		{name: "no trailing newline", before: ptr("Host work\n\tUser alice"), installed: wantBlock + "Host work\n\tUser alice"},
		{name: "only blank lines", before: ptr("\n\n"), installed: wantBlock + "\n\n"},
		{name: "comment first", before: ptr("# mine\nInclude ~/.ssh/other\n"), installed: wantBlock + "# mine\nInclude ~/.ssh/other\n"},
		{name: "CRLF lines", before: ptr("Host work\r\n\tUser alice\r\n"), installed: wantBlock + "Host work\r\n\tUser alice\r\n"},
		{name: "a marker-like line that is not ours", before: ptr("#>>> banger >>>\n"), installed: wantBlock + "#>>> banger >>>\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			path := filepath.Join(home, ".ssh", "config")
			if tt.before != nil {
				os.MkdirAll(filepath.Dir(path), 0o700)
				if err := os.WriteFile(path, []byte(*tt.before), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			changed, err := InstallInclude(path, include)
			if err != nil || !changed {
				t.Fatalf("InstallInclude = %v, %v; want a change", changed, err)
			}
			if diff := cmp.Diff(tt.installed, readOrAbsent(t, path)); diff != "" {
				t.Errorf("after install (-want +got):\n%s", diff)
			}
			if changed, err := InstallInclude(path, include); err != nil || changed {
				t.Errorf("second InstallInclude = %v, %v; want no change", changed, err)
			}
			if diff := cmp.Diff(tt.installed, readOrAbsent(t, path)); diff != "" {
				t.Errorf("after a second install (-want +got):\n%s", diff)
			}
			changed, err = UninstallInclude(path)
			if err != nil || !changed {
				t.Fatalf("UninstallInclude = %v, %v; want a change", changed, err)
			}
			want := "<absent>"
			if tt.before != nil {
				want = *tt.before
			}
			if diff := cmp.Diff(want, readOrAbsent(t, path)); diff != "" {
				t.Errorf("after uninstall (-want +got):\n%s", diff)
			}
			if changed, err := UninstallInclude(path); err != nil || changed {
				t.Errorf("second UninstallInclude = %v, %v; want no change", changed, err)
			}
		})
	}
}

func TestIncludeModes(t *testing.T) {
	home := t.TempDir()
	path := filepath.Join(home, ".ssh", "config")
	if _, err := InstallInclude(path, include); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700, path: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %o", p, fi.Mode(), err, want)
		}
	}
	// An existing file keeps its mode through a rewrite.
	os.Chmod(path, 0o640)
	if _, err := InstallInclude(path, "Include /elsewhere"); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode after rewrite %o, want 640", fi.Mode().Perm())
	}
}

func TestIncludeUpdatesTheBlockInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	// The user moved the block below a Host line of theirs; it stays there.
	before := "Host a\n\tUser x\n" + wantBlock + "Host b\n"
	os.WriteFile(path, []byte(before), 0o600)
	changed, err := InstallInclude(path, "Include /new/place")
	if err != nil || !changed {
		t.Fatalf("InstallInclude = %v, %v", changed, err)
	}
	want := "Host a\n\tUser x\n" + strings.Replace(wantBlock, include, "Include /new/place", 1) + "Host b\n"
	if diff := cmp.Diff(want, readOrAbsent(t, path)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := UninstallInclude(path); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("Host a\n\tUser x\nHost b\n", readOrAbsent(t, path)); diff != "" {
		t.Errorf("after uninstall (-want +got):\n%s", diff)
	}
}

func TestUninstallWithoutBlockChangesNothing(t *testing.T) {
	tests := []struct {
		name   string
		before *string
	}{
		{"absent", nil},
		{"empty", ptr("")},
		{"host blocks", ptr("Host work\n\tUser alice\n")},
		{"no trailing newline", ptr("Host work")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), ".ssh")
			path := filepath.Join(dir, "config")
			if tt.before != nil {
				os.MkdirAll(dir, 0o700)
				os.WriteFile(path, []byte(*tt.before), 0o644)
			}
			var mtime int64
			if fi, err := os.Stat(path); err == nil {
				mtime = fi.ModTime().UnixNano()
			}
			changed, err := UninstallInclude(path)
			if err != nil || changed {
				t.Fatalf("UninstallInclude = %v, %v; want no change", changed, err)
			}
			want := "<absent>"
			if tt.before != nil {
				want = *tt.before
				if fi, _ := os.Stat(path); fi.ModTime().UnixNano() != mtime {
					t.Error("the file was rewritten")
				}
			} else if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("uninstall created %s", dir)
			}
			if diff := cmp.Diff(want, readOrAbsent(t, path)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestIncludeFollowsSymlink(t *testing.T) {
	home := t.TempDir()
	target := filepath.Join(home, "dotfiles", "ssh_config")
	os.MkdirAll(filepath.Dir(target), 0o755)
	os.WriteFile(target, []byte("Host work\n"), 0o644)
	link := filepath.Join(home, ".ssh", "config")
	os.MkdirAll(filepath.Dir(link), 0o700)
	if err := os.Symlink("../dotfiles/ssh_config", link); err != nil {
		t.Fatal(err)
	}
	if _, err := InstallInclude(link, include); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("%s is no longer a symlink (%v)", link, err)
	}
	if diff := cmp.Diff(wantBlock+"Host work\n", readOrAbsent(t, target)); diff != "" {
		t.Errorf("target after install (-want +got):\n%s", diff)
	}
	if _, err := UninstallInclude(link); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("Host work\n", readOrAbsent(t, target)); diff != "" {
		t.Errorf("target after uninstall (-want +got):\n%s", diff)
	}
}

func TestIncludeRefusesBrokenMarkers(t *testing.T) {
	tests := []struct{ name, before, err string }{
		{"begin without end", "# >>> banger >>>\nInclude x\nHost a\n", "without"},
		{"end without begin", "Host a\n# <<< banger <<<\n", "line 2"},
		{"two begins", "# >>> banger >>>\n# >>> banger >>>\n# <<< banger <<<\n", "a second"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config")
			os.WriteFile(path, []byte(tt.before), 0o600)
			for _, f := range []func() (bool, error){
				func() (bool, error) { return InstallInclude(path, include) },
				func() (bool, error) { return UninstallInclude(path) },
			} {
				if _, err := f(); err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "fix the file by hand") {
					t.Errorf("error = %v, want one mentioning %q", err, tt.err)
				}
			}
			if diff := cmp.Diff(tt.before, readOrAbsent(t, path)); diff != "" {
				t.Errorf("the file changed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIncludeLine(t *testing.T) {
	tests := []struct{ path, home, want string }{
		{"/home/a/.config/banger/ssh_config", "/home/a", "Include ~/.config/banger/ssh_config"},
		{"/xdg/banger/ssh_config", "/home/a", "Include /xdg/banger/ssh_config"},
		{"/home/ab/x", "/home/a", "Include /home/ab/x"},
		{"/my home/banger/ssh_config", "", `Include "/my home/banger/ssh_config"`},
	}
	for _, tt := range tests {
		if got := IncludeLine(tt.path, tt.home); got != tt.want {
			t.Errorf("IncludeLine(%q, %q) = %q, want %q", tt.path, tt.home, got, tt.want)
		}
	}
}

func ptr(s string) *string { return &s }

func readOrAbsent(t *testing.T, path string) string {
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
