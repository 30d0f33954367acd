package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var mtime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// entry is a tar entry in tests.
type entry struct {
	name, link, body string
	typ              byte
	mode             int64
	uid, gid         int
}

func makeTar(t *testing.T, entries []entry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: typ, Mode: mode, Uid: e.uid, Gid: e.gid,
			ModTime: mtime, Size: int64(len(e.body)), Devmajor: 1, Devminor: 3}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

// listTree describes every file under dir, one line each.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %s %d:%d", rel, fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %q links=%d", b, st.Nlink)
		}
		if !fi.ModTime().Equal(mtime) {
			line += " mtime=" + fi.ModTime().UTC().Format(time.RFC3339)
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// listTar describes every entry of a tar stream, one line each.
func listTar(t *testing.T, r io.Reader) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		line := fmt.Sprintf("%s %c %o %d:%d", h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid)
		if h.Linkname != "" {
			line += " -> " + h.Linkname
		}
		if len(b) > 0 {
			line += fmt.Sprintf(" %q", b)
		}
		if !h.ModTime.Equal(mtime) {
			line += " mtime=" + h.ModTime.UTC().Format(time.RFC3339)
		}
		out = append(out, line)
	}
}

func TestFilesRoundTrip(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("preserving uid/gid needs root")
	}
	root := t.TempDir()
	c := serveUnix(t, New(Config{Root: root}), ClientConfig{})
	ctx := testContext(t)

	in := makeTar(t, []entry{
		{name: "tree/", typ: tar.TypeDir, mode: 0o755},
		{name: "tree/a.txt", body: "hello", mode: 0o640, uid: 1234, gid: 5678},
		{name: "tree/bin/", typ: tar.TypeDir, mode: 0o555},
		{name: "tree/bin/run", body: "#!/bin/sh\n", mode: 0o4755},
		{name: "tree/empty/", typ: tar.TypeDir, mode: 0o700},
		{name: "tree/link", typ: tar.TypeSymlink, link: "a.txt", mode: 0o777},
		{name: "tree/hard", typ: tar.TypeLink, link: "tree/a.txt"},
	})
	res, err := c.CopyTo(ctx, in, "/dst/sub")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(CopyResult{Entries: 7, Bytes: 15}, res); diff != "" {
		t.Errorf("copy result (-want +got):\n%s", diff)
	}
	wantTree := []string{
		`tree drwxr-xr-x 0:0`,
		`tree/a.txt -rw-r----- 1234:5678 "hello" links=2`,
		`tree/bin dr-xr-xr-x 0:0`,
		`tree/bin/run urwxr-xr-x 0:0 "#!/bin/sh\n" links=1`,
		`tree/empty drwx------ 0:0`,
		`tree/hard -rw-r----- 1234:5678 "hello" links=2`,
		`tree/link Lrwxrwxrwx 0:0 -> a.txt`,
	}
	if diff := cmp.Diff(wantTree, listTree(t, filepath.Join(root, "dst/sub"))); diff != "" {
		t.Errorf("extracted tree (-want +got):\n%s", diff)
	}

	rc, err := c.CopyFrom(ctx, "/dst/sub/tree")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := io.Copy(&out, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	wantTar := []string{
		`tree/ 5 755 0:0`,
		`tree/a.txt 0 640 1234:5678 "hello"`,
		`tree/bin/ 5 555 0:0`,
		`tree/bin/run 0 4755 0:0 "#!/bin/sh\n"`,
		`tree/empty/ 5 700 0:0`,
		`tree/hard 1 640 1234:5678 -> tree/a.txt`,
		`tree/link 2 777 0:0 -> a.txt`,
	}
	if diff := cmp.Diff(wantTar, listTar(t, bytes.NewReader(out.Bytes()))); diff != "" {
		t.Errorf("archived tree (-want +got):\n%s", diff)
	}

	// What came out goes back in unchanged.
	if _, err := c.CopyTo(ctx, &out, "/copy"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantTree, listTree(t, filepath.Join(root, "copy"))); diff != "" {
		t.Errorf("re-extracted tree (-want +got):\n%s", diff)
	}
}

func TestPutAndReadFile(t *testing.T) {
	root := t.TempDir()
	c := serveUnix(t, New(Config{Root: root}), ClientConfig{})
	ctx := testContext(t)
	if err := c.PutFile(ctx, "/etc/banger/app.conf", 0o600, []byte("key = 1\n")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, "etc/banger/app.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600 {
		t.Errorf("mode = %s, want 0600", fi.Mode())
	}
	// The requested path itself may be a symlink (like /etc/resolv.conf).
	if err := os.Symlink("banger/app.conf", filepath.Join(root, "etc/app.conf")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/etc/banger/app.conf", "/etc/app.conf"} {
		got, err := c.ReadFile(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "key = 1\n" {
			t.Errorf("ReadFile(%s) = %q", p, got)
		}
	}
	if _, err := c.ReadFile(ctx, "/etc/banger"); err == nil {
		t.Error("ReadFile of a directory succeeded")
	}
}

func TestExtractRejectsHostileEntries(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, target, outside string)
		entries func(outside string) []entry
		wantErr bool
	}{
		{name: "dot-dot", wantErr: true, entries: func(string) []entry {
			return []entry{{name: "../x", body: "pwned"}}
		}},
		{name: "nested dot-dot", wantErr: true, entries: func(string) []entry {
			return []entry{{name: "a/../../x", body: "pwned"}}
		}},
		{name: "absolute", wantErr: true, entries: func(string) []entry {
			return []entry{{name: "/etc/x", body: "pwned"}}
		}},
		{name: "through symlink to outside", wantErr: true, entries: func(outside string) []entry {
			return []entry{{name: "link", typ: tar.TypeSymlink, link: outside}, {name: "link/x", body: "pwned"}}
		}},
		{name: "through symlink to /", wantErr: true, entries: func(string) []entry {
			return []entry{{name: "link", typ: tar.TypeSymlink, link: "/"}, {name: "link/banger-agent-test-x", body: "pwned"}}
		}},
		{name: "through relative symlink", wantErr: true, entries: func(string) []entry {
			return []entry{{name: "up", typ: tar.TypeSymlink, link: ".."}, {name: "up/outside/x", body: "pwned"}}
		}},
		{name: "directory replaced by symlink", wantErr: true, entries: func(outside string) []entry {
			return []entry{{name: "d/", typ: tar.TypeDir, mode: 0o777}, {name: "d", typ: tar.TypeSymlink, link: outside}, {name: "d/x", body: "pwned"}}
		}},
		{name: "symlink already in the guest", wantErr: true,
			setup: func(t *testing.T, target, outside string) {
				if err := os.Symlink(outside, filepath.Join(target, "pre")); err != nil {
					t.Fatal(err)
				}
			},
			entries: func(string) []entry { return []entry{{name: "pre/x", body: "pwned"}} }},
		{name: "hard link with dot-dot", wantErr: true, entries: func(string) []entry {
			return []entry{{name: "hl", typ: tar.TypeLink, link: "../outside/secret"}}
		}},
		{name: "hard link absolute", wantErr: true, entries: func(outside string) []entry {
			return []entry{{name: "hl", typ: tar.TypeLink, link: filepath.Join(outside, "secret")}}
		}},
		{name: "hard link through symlink", wantErr: true, entries: func(outside string) []entry {
			return []entry{{name: "d", typ: tar.TypeSymlink, link: outside}, {name: "hl", typ: tar.TypeLink, link: "d/secret"}}
		}},
		{name: "char device", wantErr: true, entries: func(string) []entry {
			return []entry{{name: "null", typ: tar.TypeChar, mode: 0o666}}
		}},
		{name: "fifo", wantErr: true, entries: func(string) []entry {
			return []entry{{name: "fifo", typ: tar.TypeFifo}}
		}},
		{name: "file over a symlink replaces the link", wantErr: false,
			setup: func(t *testing.T, target, outside string) {
				if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(target, "f")); err != nil {
					t.Fatal(err)
				}
			},
			entries: func(string) []entry { return []entry{{name: "f", body: "mine"}} }},
		{name: "file over a hard link does not write through", wantErr: false,
			setup: func(t *testing.T, target, outside string) {
				if err := os.Link(filepath.Join(outside, "secret"), filepath.Join(target, "f")); err != nil {
					t.Fatal(err)
				}
			},
			entries: func(string) []entry { return []entry{{name: "f", body: "mine"}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			target := filepath.Join(root, "t")
			outside := filepath.Join(root, "outside")
			writeFiles(t, outside, map[string]string{"secret": "secret"})
			if err := os.Mkdir(target, 0o755); err != nil {
				t.Fatal(err)
			}
			before := listTree(t, outside)
			if tt.setup != nil {
				tt.setup(t, target, outside)
			}
			c := serveUnix(t, New(Config{Root: root}), ClientConfig{})
			_, err := c.CopyTo(testContext(t), makeTar(t, tt.entries(outside)), "/t")
			if tt.wantErr && !errors.Is(err, ErrBadRequest) {
				t.Errorf("err = %v, want a bad_request rejection", err)
			}
			if !tt.wantErr && err != nil {
				t.Errorf("err = %v", err)
			}
			if diff := cmp.Diff(before, listTree(t, outside)); diff != "" {
				t.Errorf("outside the target changed (-before +after):\n%s", diff)
			}
			for _, p := range []string{filepath.Join(root, "x"), "/etc/x", "/banger-agent-test-x"} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written", p)
					if p == "/banger-agent-test-x" {
						os.Remove(p) // only this test makes that name
					}
				}
			}
			if !tt.wantErr {
				if b, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(b) != "mine" {
					t.Errorf("target file = %q, %v", b, err)
				}
			}
		})
	}
}

func TestCopyFromReportsAFailureMidStream(t *testing.T) {
	// The agent sends the error of a tar stream that broke after it
	// started in a trailer; Read must return it instead of a clean EOF.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", trailerError)
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("partial tar"))
		w.Header().Set(trailerError, "read /var/log/x: input/output error")
	}))
	defer srv.Close()
	c := NewClient(ClientConfig{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
	}})
	defer c.Close()
	rc, err := c.CopyFrom(testContext(t), "/var/log")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if string(b) != "partial tar" || err == nil || !strings.Contains(err.Error(), "input/output error") {
		t.Errorf("read %q, err %v; want the partial bytes and the trailer's error", b, err)
	}
}
