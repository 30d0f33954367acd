package roothelper

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The test binary re-runs itself as a helper process for what must happen
// in another process: calling the socket as another uid, or opening a tap
// as the owner from inside a namespace.
const envChild = "BANGER_ROOTHELPER_TEST_CHILD"

func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "resolvectl" {
		fakeResolvectl()
	}
	switch os.Getenv(envChild) {
	case "":
		os.Exit(m.Run())
	case "call":
		childCall()
	case "opentap":
		childOpenTap()
	default:
		fmt.Println("unknown child mode")
		os.Exit(2)
	}
}

// childCall asks the helper on BANGER_TEST_SOCKET to create an invalid tap
// and prints the error code and message: bad_request means it got past
// authorisation.
func childCall() {
	c := NewClient(os.Getenv("BANGER_TEST_SOCKET"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.CreateTap(ctx, "evil/x")
	if err == nil {
		fmt.Println("ok")
	} else {
		fmt.Println(api.CodeOf(err), err)
	}
	os.Exit(0)
}

// childOpenTap attaches to the tap the way a VMM does, as
// BANGER_TEST_UID/GID, printing "ok" or the error. /dev/net/tun is opened
// before dropping root because some hosts (this build machine) keep it
// 0600; the tap's owner check happens at TUNSETIFF, with the dropped
// credentials.
func childOpenTap() {
	uid, _ := strconv.Atoi(os.Getenv("BANGER_TEST_UID"))
	gid, _ := strconv.Atoi(os.Getenv("BANGER_TEST_GID"))
	err := func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := syscall.Setgroups(nil); err != nil {
			return err
		}
		if err := syscall.Setgid(gid); err != nil {
			return err
		}
		if err := syscall.Setuid(uid); err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(os.Getenv("BANGER_TEST_TAP"))
		if err != nil {
			return err
		}
		ifr.SetUint16(tapFlags)
		return unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}()
	if err != nil {
		fmt.Println(err)
	} else {
		fmt.Println("ok")
	}
	os.Exit(0)
}

// prereq skips the test when a prerequisite is missing, unless the run
// asked for everything (BANGER_E2E=1), where it fails instead.
func prereq(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("BANGER_E2E") == "1" {
		t.Fatalf("BANGER_E2E=1 but %s", msg)
	}
	t.Skip(msg)
}

// newTestNetNS creates a network namespace for this test alone and
// returns its path; it is deleted when the test ends.
func newTestNetNS(t *testing.T) string {
	t.Helper()
	prereq(t, os.Geteuid() == 0, "needs root to create a network namespace")
	ip, err := exec.LookPath("ip")
	prereq(t, err == nil, "needs the ip tool (iproute2) to create a network namespace")
	b := make([]byte, 4)
	rand.Read(b)
	name := "banger-t-" + hex.EncodeToString(b)
	out, err := exec.Command(ip, "netns", "add", name).CombinedOutput()
	prereq(t, err == nil, "ip netns add %s: %v: %s", name, err, out)
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return "/run/netns/" + name
}

// nsServer is a Server acting in a fresh namespace of its own.
func nsServer(t *testing.T) (*Server, Config) {
	t.Helper()
	cfg := testConfig(t)
	cfg.NetNS = newTestNetNS(t)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, cfg
}

// nsHandle is the test's own netlink handle into the namespace, for
// checking and for setting up odd situations independently of the code
// under test.
func nsHandle(t *testing.T, path string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// nsNFT is the test's own nftables connection into the namespace; it
// skips (or fails under BANGER_E2E) when nftables is unusable there.
func nsNFT(t *testing.T, path string) *nftables.Conn {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ListTables()
	prereq(t, err == nil, "nftables is not usable in a namespace: %v", err)
	return c
}

func requireTun(t *testing.T) {
	t.Helper()
	_, err := os.Stat("/dev/net/tun")
	prereq(t, err == nil, "needs /dev/net/tun: %v", err)
}

// setForwarding sets ip_forward in the server's namespace, so tests start
// from a known value.
func setForwarding(t *testing.T, s *Server, v string) {
	t.Helper()
	if err := s.ns.writeSysctl(ipForwardPath, v); err != nil {
		t.Fatal(err)
	}
}

func forwarding(t *testing.T, s *Server) string {
	t.Helper()
	v, err := s.ns.readSysctl(ipForwardPath)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// linkNames lists the namespace's links, lo excepted.
func linkNames(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			names = append(names, l.Attrs().Name)
		}
	}
	slices.Sort(names)
	return names
}

// lockedWriter lets slog write from server goroutines while the test reads.
type lockedWriter struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// records decodes the JSON log lines whose message is msg.
func (w *lockedWriter) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(w.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}
