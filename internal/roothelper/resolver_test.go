package roothelper

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/command"
	"github.com/google/go-cmp/cmp"
)

// fakeResolvectl is the test binary run through a link named resolvectl:
// it appends its arguments to "calls" beside the link and, when a file
// "fail" is there, prints it to stderr and exits 1, as resolvectl does.
func fakeResolvectl() {
	dir := filepath.Dir(os.Args[0])
	f, err := os.OpenFile(filepath.Join(dir, "calls"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Fprintln(f, strings.Join(os.Args[1:], " "))
	f.Close()
	if msg, err := os.ReadFile(filepath.Join(dir, "fail")); err == nil {
		os.Stderr.Write(msg)
		os.Exit(1)
	}
	os.Exit(0)
}

// fakeHost is a resolvectl whose binary is the fake and whose resolved
// runtime directory is a temp dir ("running" when it holds the stub file).
type fakeHost struct {
	dir string
	r   resolvectl
}

func newFakeHost(t *testing.T, running bool, links ...string) *fakeHost {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin", "resolvectl")
	run := filepath.Join(dir, "run")
	for _, d := range []string{filepath.Dir(bin), run} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(self, bin); err != nil {
		t.Fatal(err)
	}
	if running {
		if err := os.WriteFile(filepath.Join(run, "stub-resolv.conf"), []byte("nameserver 127.0.0.53\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return &fakeHost{dir: dir, r: resolvectl{bin: bin, runDir: run, hasLink: func(name string) bool {
		for _, l := range links {
			if l == name {
				return true
			}
		}
		return false
	}}}
}

func (f *fakeHost) calls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, "bin", "calls"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (f *fakeHost) failWith(t *testing.T, msg string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, "bin", "fail"), []byte(msg), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestResolvectl(t *testing.T) {
	ctx := t.Context()
	addr := netip.MustParseAddrPort("127.0.0.1:42069")

	t.Run("sync", func(t *testing.T) {
		f := newFakeHost(t, true, "banger0")
		st, err := f.r.sync(ctx, "banger0", addr)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(ResolverStatus{Applied: true}, st); diff != "" {
			t.Errorf("status (-want +got):\n%s", diff)
		}
		want := []string{"dns banger0 127.0.0.1:42069", "domain banger0 ~vm", "default-route banger0 false"}
		if diff := cmp.Diff(want, f.calls(t)); diff != "" {
			t.Errorf("resolvectl calls (-want +got):\n%s", diff)
		}
	})
	t.Run("sync to the bridge address over IPv6 loopback", func(t *testing.T) {
		f := newFakeHost(t, true, "banger0")
		if _, err := f.r.sync(ctx, "banger0", netip.MustParseAddrPort("[::1]:42069")); err != nil {
			t.Fatal(err)
		}
		if got := f.calls(t)[0]; got != "dns banger0 [::1]:42069" {
			t.Errorf("first call %q", got)
		}
	})
	t.Run("clear", func(t *testing.T) {
		f := newFakeHost(t, true, "banger0")
		st, err := f.r.clear(ctx, "banger0")
		if err != nil || !st.Applied {
			t.Fatalf("clear: %+v, %v", st, err)
		}
		if diff := cmp.Diff([]string{"revert banger0"}, f.calls(t)); diff != "" {
			t.Errorf("resolvectl calls (-want +got):\n%s", diff)
		}
	})
	t.Run("resolved not running", func(t *testing.T) {
		f := newFakeHost(t, false, "banger0")
		st, err := f.r.sync(ctx, "banger0", addr)
		if err != nil || st.Applied || !strings.Contains(st.Reason, "systemd-resolved is not running") {
			t.Errorf("sync: %+v, %v; want not applied, not running", st, err)
		}
		st, err = f.r.clear(ctx, "banger0")
		if err != nil || st.Applied || !strings.Contains(st.Reason, "systemd-resolved is not running") {
			t.Errorf("clear: %+v, %v; want not applied, not running", st, err)
		}
		if got := f.calls(t); got != nil {
			t.Errorf("resolvectl ran: %v", got)
		}
	})
	t.Run("no bridge", func(t *testing.T) {
		f := newFakeHost(t, true)
		if _, err := f.r.sync(ctx, "banger0", addr); !errors.Is(err, api.ErrNotFound) {
			t.Errorf("sync without the link: %v, want not_found", err)
		}
		st, err := f.r.clear(ctx, "banger0")
		if err != nil || st.Applied || !strings.Contains(st.Reason, "does not exist") {
			t.Errorf("clear without the link: %+v, %v", st, err)
		}
		if got := f.calls(t); got != nil {
			t.Errorf("resolvectl ran: %v", got)
		}
	})
	t.Run("failure carries argv and output", func(t *testing.T) {
		f := newFakeHost(t, true, "banger0")
		f.failWith(t, "Failed to set DNS configuration: Link banger0 is managed.\n")
		_, err := f.r.sync(ctx, "banger0", addr)
		var ce *command.Error
		if !errors.As(err, &ce) {
			t.Fatalf("sync: %v, want a command error", err)
		}
		if diff := cmp.Diff([]string{f.r.bin, "dns", "banger0", "127.0.0.1:42069"}, ce.Argv); diff != "" {
			t.Errorf("argv (-want +got):\n%s", diff)
		}
		if !strings.Contains(err.Error(), "route .vm on banger0 to 127.0.0.1:42069") || !strings.Contains(err.Error(), "Link banger0 is managed") {
			t.Errorf("error %q", err)
		}
		if diff := cmp.Diff([]string{"dns banger0 127.0.0.1:42069"}, f.calls(t)); diff != "" {
			t.Errorf("stopped after the failure (-want +got):\n%s", diff)
		}
	})
}

func TestResolvedRunningBySocket(t *testing.T) {
	dir := t.TempDir()
	r := resolvectl{runDir: dir}
	if r.running() {
		t.Fatal("running with an empty dir")
	}
	// A plain file with the socket's name is not resolved.
	if err := os.WriteFile(filepath.Join(dir, "io.systemd.Resolve"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if r.running() {
		t.Error("running with a plain file for a socket")
	}
	if err := os.Remove(filepath.Join(dir, "io.systemd.Resolve")); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "io.systemd.Resolve"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if !r.running() {
		t.Error("not running with resolved's varlink socket")
	}
}

func TestValidateResolverAddr(t *testing.T) {
	cidr := netip.MustParsePrefix("172.16.0.1/24")
	for _, tt := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:42069", true},
		{"127.0.0.53:5353", true},
		{"[::1]:42069", true},
		{"172.16.0.1:42069", true},
		{"172.16.0.2:42069", false},
		{"172.16.0.1:0", false},
		{"0.0.0.0:42069", false},
		{"192.168.1.1:53", false},
		{"[::ffff:127.0.0.1]:42069", false},
		{"[fe80::1%eth0]:53", false},
	} {
		err := validateResolverAddr(cidr, netip.MustParseAddrPort(tt.addr))
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v, want ok=%v", tt.addr, err, tt.ok)
		}
		if err != nil && !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("%s: %v is not bad_request", tt.addr, err)
		}
	}
	if err := validateResolverAddr(cidr, netip.AddrPort{}); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("missing: %v", err)
	}
}
