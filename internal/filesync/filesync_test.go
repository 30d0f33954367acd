package filesync

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/banger/banger/internal/config"
)

// hdr is what the guest will see of one tar entry.
type hdr struct {
	Name     string
	Type     byte
	Mode     int64
	Uid, Gid int
	Body     string
}

func dir(name string, mode int64) hdr { return hdr{Name: name + "/", Type: tar.TypeDir, Mode: mode} }
func file(name string, mode int64, body string) hdr {
	return hdr{Name: name, Type: tar.TypeReg, Mode: mode, Body: body}
}

func readTar(t *testing.T, b []byte) []hdr {
	t.Helper()
	var out []hdr
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner names %q/%q, want none", h.Name, h.Uname, h.Gname)
		}
		out = append(out, hdr{Name: h.Name, Type: h.Typeflag, Mode: h.Mode, Uid: h.Uid, Gid: h.Gid, Body: string(body)})
	}
}

// tree builds files under a directory; it is the test's view of a home.
type tree struct {
	t    *testing.T
	base string
}

func (tr tree) path(p string) string { return filepath.Join(tr.base, p) }

func (tr tree) dir(p string, mode fs.FileMode) {
	tr.t.Helper()
	if err := os.MkdirAll(tr.path(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Chmod(tr.path(p), mode); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr tree) file(p string, mode fs.FileMode, body string) {
	tr.t.Helper()
	if err := os.MkdirAll(filepath.Dir(tr.path(p)), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.WriteFile(tr.path(p), []byte(body), mode); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Chmod(tr.path(p), mode); err != nil { // past the umask
		tr.t.Fatal(err)
	}
}

func (tr tree) symlink(p, target string) {
	tr.t.Helper()
	if err := os.MkdirAll(filepath.Dir(tr.path(p)), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Symlink(target, tr.path(p)); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr tree) fifo(p string) {
	tr.t.Helper()
	if err := syscall.Mkfifo(tr.path(p), 0o600); err != nil {
		tr.t.Fatal(err)
	}
}

// entry is a [[file_sync]] entry as internal/config decodes it. host may
// be ~/..., or absolute with %h standing for the home and %o for the
// outside directory.
func entry(home, outside, host, guest string) config.FileSync {
	host = strings.NewReplacer("%h", home, "%o", outside).Replace(host)
	e := config.FileSync{Host: host, HostPath: host, Guest: guest, GuestPath: guest}
	if rest, ok := strings.CutPrefix(host, "~/"); ok {
		e.HostPath = filepath.Join(home, rest)
	}
	if rest, ok := strings.CutPrefix(guest, "~/"); ok {
		e.GuestPath = "/root/" + rest
	}
	return e
}

func withMode(e config.FileSync, m fs.FileMode) config.FileSync {
	e.Mode, e.ModeSet = m, true
	return e
}

func TestBuild(t *testing.T) {
	type env struct {
		home, outside tree
	}
	tests := []struct {
		name    string
		setup   func(env)
		entries func(home, outside string) []config.FileSync
		want    []hdr
		warn    []string
		wantErr string // %h: the home, %o: the outside directory
		// late: the error is found while walking, after the stream started
		late bool
	}{
		{
			name:  "file gets 0600 by default",
			setup: func(e env) { e.home.file(".gitconfig", 0o644, "[user]") },
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/.gitconfig", "~/.gitconfig")}
			},
			want: []hdr{file(".gitconfig", 0o600, "[user]")},
		},
		{
			name:  "file with a mode, parent made 0700",
			setup: func(e env) { e.home.file("bin/tool", 0o644, "#!/bin/sh") },
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{withMode(entry(h, o, "~/bin/tool", "/root/bin/tool"), 0o755)}
			},
			want: []hdr{dir("bin", 0o700), file("bin/tool", 0o755, "#!/bin/sh")},
		},
		{
			name:  "every parent of the guest path",
			setup: func(e env) { e.home.file("gh.yml", 0o600, "token") },
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/gh.yml", "~/.config/gh/hosts.yml")}
			},
			want: []hdr{dir(".config", 0o700), dir(".config/gh", 0o700), file(".config/gh/hosts.yml", 0o600, "token")},
		},
		{
			name: "directory keeps modes, owner rwx added",
			setup: func(e env) {
				e.home.file(".aws/config", 0o644, "c")
				e.home.file(".aws/credentials", 0o600, "k")
				e.home.file(".aws/sub/run", 0o755, "r")
				e.home.file(".aws/ro/x", 0o444, "x")
				e.home.dir(".aws/sub", 0o750)
				e.home.dir(".aws/ro", 0o555)
				e.home.dir(".aws/empty", 0o700)
				e.home.dir(".aws", 0o755)
			},
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/.aws", "~/.aws")}
			},
			want: []hdr{
				dir(".aws", 0o755),
				file(".aws/config", 0o644, "c"),
				file(".aws/credentials", 0o600, "k"),
				dir(".aws/empty", 0o700),
				dir(".aws/ro", 0o755),
				file(".aws/ro/x", 0o444, "x"),
				dir(".aws/sub", 0o750),
				file(".aws/sub/run", 0o755, "r"),
			},
		},
		{
			name: "mode on a directory applies to its files",
			setup: func(e env) {
				e.home.file("keys/a", 0o644, "a")
				e.home.file("keys/deep/b", 0o755, "b")
				e.home.dir("keys", 0o700)
			},
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{withMode(entry(h, o, "~/keys", "~/k"), 0o400)}
			},
			want: []hdr{dir("k", 0o700), file("k/a", 0o400, "a"), dir("k/deep", 0o755), file("k/deep/b", 0o400, "b")},
		},
		{
			name:  "absolute path inside the home",
			setup: func(e env) { e.home.file(".npmrc", 0o600, "npm") },
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "%h/.npmrc", "/root/.npmrc")}
			},
			want: []hdr{file(".npmrc", 0o600, "npm")},
		},
		{
			name:  "absolute path outside the home",
			setup: func(e env) { e.outside.file("passwd", 0o644, "root:x") },
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "%o/passwd", "~/passwd")}
			},
			wantErr: "file_sync[0]: %o/passwd is outside your home; banger copies only files inside %h",
		},
		{
			name: "top-level symlinks inside the home are followed",
			setup: func(e env) {
				e.home.file("dotfiles/aws/config", 0o644, "c")
				e.home.dir("dotfiles/aws", 0o700)
				e.home.symlink(".aws", "dotfiles/aws")
				e.home.file("dotfiles/vimrc", 0o644, "set nu")
				e.home.symlink(".vimrc", e.home.path("dotfiles/vimrc"))
			},
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/.aws", "~/.aws"), entry(h, o, "~/.vimrc", "~/.vimrc")}
			},
			want: []hdr{dir(".aws", 0o700), file(".aws/config", 0o644, "c"), file(".vimrc", 0o600, "set nu")},
		},
		{
			name: "symlinked directory above the entry",
			setup: func(e env) {
				e.home.file("src/dot/.tmux.conf", 0o644, "tmux")
				e.home.symlink("dot", "src/dot")
			},
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/dot/.tmux.conf", "~/.tmux.conf")}
			},
			want: []hdr{file(".tmux.conf", 0o600, "tmux")},
		},
		{
			name: "top-level symlink out of the home",
			setup: func(e env) {
				e.home.file(".gitconfig", 0o644, "g")
				e.outside.file("secrets/key", 0o600, "k")
				e.home.symlink(".aws", e.outside.path("secrets"))
			},
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/.gitconfig", "~/.gitconfig"), entry(h, o, "~/.aws", "~/.aws")}
			},
			wantErr: "file_sync[1]: ~/.aws links to %o/secrets, outside your home; banger copies only files inside %h",
		},
		{
			name: "relative symlink climbing out of the home",
			setup: func(e env) {
				e.outside.file("token", 0o600, "t")
				e.home.symlink("t", "../outside/token")
			},
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/t", "~/t")}
			},
			wantErr: "file_sync[0]: ~/t links to %o/token, outside your home; banger copies only files inside %h",
		},
		{
			name: "symlinks inside a synced directory are skipped",
			setup: func(e env) {
				e.home.file(".gitconfig", 0o644, "g")
				e.home.file(".aws/config", 0o600, "c")
				e.outside.file("creds", 0o600, "s")
				e.home.symlink(".aws/in", "../.gitconfig")
				e.home.symlink(".aws/out", e.outside.path("creds"))
				e.home.symlink(".aws/sub/dirlink", "..")
				e.home.dir(".aws/sub", 0o700)
				e.home.dir(".aws", 0o700)
			},
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/.aws", "~/.aws")}
			},
			want: []hdr{dir(".aws", 0o700), file(".aws/config", 0o600, "c"), dir(".aws/sub", 0o700)},
			warn: []string{
				"file_sync[0]: skipped ~/.aws/in: a symlink (links inside a synced directory are never followed)",
				"file_sync[0]: skipped ~/.aws/out: a symlink (links inside a synced directory are never followed)",
				"file_sync[0]: skipped ~/.aws/sub/dirlink: a symlink (links inside a synced directory are never followed)",
			},
		},
		{
			name: "fifo inside a synced directory is skipped",
			setup: func(e env) {
				e.home.file("d/f", 0o600, "f")
				e.home.fifo("d/pipe")
				e.home.dir("d", 0o700)
			},
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/d", "~/d")}
			},
			want: []hdr{dir("d", 0o700), file("d/f", 0o600, "f")},
			warn: []string{"file_sync[0]: skipped ~/d/pipe: a named pipe (only files and directories are copied)"},
		},
		{
			name:  "fifo as an entry",
			setup: func(e env) { e.home.fifo("pipe") },
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/pipe", "~/pipe")}
			},
			wantErr: "file_sync[0]: ~/pipe is a named pipe; banger copies only files and directories",
		},
		{
			name:  "missing host path",
			setup: func(e env) { e.home.file("a", 0o600, "a") },
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/a", "~/a"), entry(h, o, "~/.nope", "~/.nope")}
			},
			wantErr: "file_sync[1]: ~/.nope does not exist",
		},
		{
			name:  "broken top-level symlink",
			setup: func(e env) { e.home.symlink(".dangling", "gone") },
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/.dangling", "~/.dangling")}
			},
			wantErr: "file_sync[0]: ~/.dangling is a broken symlink",
		},
		{
			name: "later entries overwrite earlier ones",
			setup: func(e env) {
				e.home.file("one", 0o600, "1")
				e.home.file("two", 0o600, "2")
			},
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/one", "~/x/f"), entry(h, o, "~/two", "~/x/f")}
			},
			want: []hdr{dir("x", 0o700), file("x/f", 0o600, "1"), file("x/f", 0o600, "2")},
		},
		{
			name: "a directory merges into one already sent",
			setup: func(e env) {
				e.home.file("gh.yml", 0o600, "t")
				e.home.file("cfg/gh/other", 0o644, "o")
				e.home.dir("cfg", 0o755)
			},
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/gh.yml", "~/.config/gh/hosts.yml"), entry(h, o, "~/cfg", "~/.config")}
			},
			// The first entry to name a directory sets its mode.
			want: []hdr{
				dir(".config", 0o700), dir(".config/gh", 0o700), file(".config/gh/hosts.yml", 0o600, "t"),
				file(".config/gh/other", 0o644, "o"),
			},
		},
		{
			name: "a file where a directory was sent",
			setup: func(e env) {
				e.home.file("a", 0o600, "a")
				e.home.file("b", 0o600, "b")
			},
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/a", "~/x/a"), entry(h, o, "~/b", "~/x")}
			},
			wantErr: "file_sync[1]: ~/x is a directory from file_sync[0] and a file here; give them different guest paths",
		},
		{
			name: "a file inside a directory where a later entry needs a directory",
			setup: func(e env) {
				e.home.file("d/x", 0o600, "x")
				e.home.file("y", 0o600, "y")
			},
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/d", "~/d"), entry(h, o, "~/y", "~/d/x/y")}
			},
			wantErr: "file_sync[1]: ~/d/x is a file from file_sync[0] and a directory here; give them different guest paths",
			late:    true,
		},
		{
			name:  "a directory synced onto /root itself",
			setup: func(e env) { e.home.file("skel/.bashrc", 0o644, "ps1") },
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/skel", "/root")}
			},
			want: []hdr{file(".bashrc", 0o644, "ps1")},
		},
		{
			name:  "a file onto /root itself",
			setup: func(e env) { e.home.file("f", 0o644, "f") },
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/f", "/root")}
			},
			wantErr: "file_sync[0]: guest path /root is /root itself; a file needs a name there",
		},
		{
			name:  "guest path outside /root",
			setup: func(e env) { e.home.file("f", 0o644, "f") },
			entries: func(h, o string) []config.FileSync {
				return []config.FileSync{entry(h, o, "~/f", "/etc/f")}
			},
			wantErr: `file_sync[0]: guest path "/etc/f" must start with ~/ or /root/`,
		},
		{
			name:    "no entries",
			setup:   func(env) {},
			entries: func(h, o string) []config.FileSync { return nil },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			e := env{home: tree{t, filepath.Join(base, "home")}, outside: tree{t, filepath.Join(base, "outside")}}
			e.home.dir(".", 0o755)
			e.outside.dir(".", 0o755)
			tt.setup(e)
			opts := Options{Home: e.home.base, Entries: tt.entries(e.home.base, e.outside.base)}
			var warned []string
			opts.Warn = func(s string) { warned = append(warned, s) }

			var buf bytes.Buffer
			_, err := Build(t.Context(), opts, &buf)
			checkErr := Check(opts)
			if tt.wantErr != "" {
				want := strings.NewReplacer("%h", e.home.base, "%o", e.outside.base).Replace(tt.wantErr)
				if err == nil || err.Error() != want {
					t.Fatalf("Build error:\n got %v\nwant %s", err, want)
				}
				if tt.late {
					return
				}
				if buf.Len() != 0 {
					t.Errorf("Build wrote %d bytes before refusing", buf.Len())
				}
				if checkErr == nil || checkErr.Error() != want {
					t.Errorf("Check error:\n got %v\nwant %s", checkErr, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if checkErr != nil {
				t.Errorf("Check: %v", checkErr)
			}
			if diff := cmp.Diff(tt.want, readTar(t, buf.Bytes())); diff != "" {
				t.Errorf("tar (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.warn, warned); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBuildHomeBehindSymlink: a home reached through a symlink (/home ->
// /usr/home) still contains its own files.
func TestBuildHomeBehindSymlink(t *testing.T) {
	base := t.TempDir()
	real := tree{t, filepath.Join(base, "real")}
	real.file(".profile", 0o644, "p")
	link := filepath.Join(base, "home")
	if err := os.Symlink(real.base, link); err != nil {
		t.Fatal(err)
	}
	opts := Options{Home: link, Entries: []config.FileSync{
		entry(link, "", "~/.profile", "~/.profile"),
		entry(link, "", real.path(".profile"), "~/.profile2"),
	}}
	var buf bytes.Buffer
	st, err := Build(t.Context(), opts, &buf)
	if err != nil {
		t.Fatal(err)
	}
	want := []hdr{file(".profile", 0o600, "p"), file(".profile2", 0o600, "p")}
	if diff := cmp.Diff(want, readTar(t, buf.Bytes())); diff != "" {
		t.Errorf("tar (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Stats{Files: 2, Bytes: 2}, st); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
}

func TestBuildStats(t *testing.T) {
	home := tree{t, t.TempDir()}
	home.file("d/a", 0o600, "aaa")
	home.file("d/s/b", 0o600, "bb")
	home.fifo("d/p")
	home.symlink("d/l", "a")
	var buf bytes.Buffer
	st, err := Build(t.Context(), Options{Home: home.base, Entries: []config.FileSync{entry(home.base, "", "~/d", "~/x/d")}}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Stats{Files: 2, Dirs: 3, Bytes: 5, Skipped: 2}, st); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
}

func TestBuildCanceled(t *testing.T) {
	home := tree{t, t.TempDir()}
	home.file("d/a", 0o600, "a")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Build(ctx, Options{Home: home.base, Entries: []config.FileSync{entry(home.base, "", "~/d", "~/d")}}, io.Discard)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Build with a canceled context: %v", err)
	}
}

func TestBuildRelativeHome(t *testing.T) {
	_, err := Build(t.Context(), Options{Home: "home/u"}, io.Discard)
	if err == nil || err.Error() != `file_sync: home "home/u" is not an absolute path` {
		t.Fatalf("Build: %v", err)
	}
}

// TestBuildSwapDuringBuild: an entry replaced by a symlink out of the home
// after it was checked is still refused; os.Root does not let it out.
func TestBuildSwapDuringBuild(t *testing.T) {
	base := t.TempDir()
	home := tree{t, filepath.Join(base, "home")}
	outside := tree{t, filepath.Join(base, "outside")}
	home.file("d/a", 0o600, "a")
	home.symlink("d/link", "a") // its warning is the moment to swap
	home.file("key", 0o600, "mine")
	outside.file("key", 0o600, "SECRET")
	swapped := false
	opts := Options{
		Home: home.base,
		Entries: []config.FileSync{
			entry(home.base, "", "~/d", "~/d"),
			entry(home.base, "", "~/key", "~/key"),
		},
		Warn: func(string) {
			if swapped {
				return
			}
			swapped = true
			if err := os.Remove(home.path("key")); err != nil {
				t.Error(err)
			}
			home.symlink("key", outside.path("key"))
		},
	}
	var buf bytes.Buffer
	_, err := Build(t.Context(), opts, &buf)
	if err == nil || !strings.HasPrefix(err.Error(), "file_sync[1]: ") {
		t.Fatalf("Build after the swap: %v, want an error for file_sync[1]", err)
	}
	if bytes.Contains(buf.Bytes(), []byte("SECRET")) {
		t.Fatal("the stream holds a file from outside the home")
	}
}
