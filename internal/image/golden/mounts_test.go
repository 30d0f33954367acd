package golden

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func mountinfoLine(mp string) string {
	return "36 35 98:0 / " + mp + " rw,noatime master:1 - ext3 /dev/root rw,errors=continue"
}

func TestMountsUnder(t *testing.T) {
	info := strings.Join([]string{
		mountinfoLine("/"),
		mountinfoLine("/w/build-1/root/proc"),
		mountinfoLine("/w/build-1/root/dev"),
		mountinfoLine("/w/build-1/root/dev/pts"),
		mountinfoLine("/w/build-1/rootfs"), // a sibling sharing the prefix
		mountinfoLine(`/w/build-1/root/with\040space`),
		mountinfoLine("/w/build-1/root/sys"),
		mountinfoLine("/w/build-1/root/sys"), // stacked twice
		mountinfoLine("/w/build-1/root"),
		"garbage",
	}, "\n")
	got, err := mountsUnder(strings.NewReader(info), "/w/build-1/root/")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/w/build-1/root/dev/pts",
		"/w/build-1/root/proc",
		"/w/build-1/root/dev",
		"/w/build-1/root/with space",
		"/w/build-1/root/sys",
		"/w/build-1/root/sys",
		"/w/build-1/root",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
}

// fakeMounts is a mount table that the recording unmounter edits.
type fakeMounts struct {
	points []string
	log    []string
	busy   map[string]bool
}

func (f *fakeMounts) read() (io.ReadCloser, error) {
	var lines []string
	for _, p := range f.points {
		lines = append(lines, mountinfoLine(p))
	}
	return io.NopCloser(strings.NewReader(strings.Join(lines, "\n"))), nil
}

func (f *fakeMounts) unmount(p string) error {
	f.log = append(f.log, "umount "+p)
	if f.busy[p] {
		return unix.EBUSY
	}
	for i, q := range f.points {
		if q == p {
			f.points = append(f.points[:i], f.points[i+1:]...)
			return nil
		}
	}
	return unix.EINVAL
}

func TestRemoveTreeUnmountsThenRemoves(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "build-1")
	mustWrite(t, filepath.Join(dir, "root", "etc", "hostname"), "x")
	fm := &fakeMounts{points: []string{"/", dir + "/root/proc", dir + "/root/dev", dir + "/root/dev/pts", dir + "-other/x"}}
	if err := removeTree(dir, fm.read, fm.unmount); err != nil {
		t.Fatal(err)
	}
	want := []string{"umount " + dir + "/root/dev/pts", "umount " + dir + "/root/proc", "umount " + dir + "/root/dev"}
	if diff := cmp.Diff(want, fm.log); diff != "" {
		t.Errorf("unmounts (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there: %v", dir, err)
	}
}

// A mount that will not go must stop the removal (it could be the host's
// /dev) but not the other unmounts.
func TestRemoveTreeRefusesWhileMounted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "build-1")
	mustWrite(t, filepath.Join(dir, "root", "dev", "null"), "")
	fm := &fakeMounts{
		points: []string{dir + "/root/proc", dir + "/root/dev", dir + "/root/sys"},
		busy:   map[string]bool{dir + "/root/dev": true},
	}
	err := removeTree(dir, fm.read, fm.unmount)
	if err == nil || !strings.Contains(err.Error(), "still mounted: "+dir+"/root/dev") || !errors.Is(err, unix.EBUSY) {
		t.Fatalf("err = %v, want EBUSY and still mounted", err)
	}
	if len(fm.log) != 3 {
		t.Errorf("stopped early: %v", fm.log)
	}
	if _, err := os.Stat(filepath.Join(dir, "root", "dev", "null")); err != nil {
		t.Errorf("removed a tree with a live mount: %v", err)
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`:     "/a b",
		`/tab\011x`:   "/tab\tx",
		`/back\134s`:  `/back\s`,
		`/short\04`:   `/short\04`,
		`/plain`:      "/plain",
		`/not\999oct`: `/not\999oct`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}
