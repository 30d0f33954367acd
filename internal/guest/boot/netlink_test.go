package boot

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// needRoot skips unless the test can act as root, failing instead when
// BANGER_E2E=1 asks for every test to run.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("BANGER_E2E") == "1" {
		t.Fatal("BANGER_E2E=1 but not running as root")
	}
	t.Skip("needs root (network namespaces)")
}

func run(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", argv, err, out)
	}
	return string(out)
}

// TestConfigureNetwork configures a dummy interface inside a network
// namespace the test creates, through the init's own netlink code.
func TestConfigureNetwork(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	ns := fmt.Sprintf("banger-boot-test-%d", os.Getpid())
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "-n", ns, "link", "add", "guest0", "address", "02:fc:00:00:00:05", "type", "veth", "peer", "name", "host0")
	run(t, "ip", "-n", ns, "link", "set", "host0", "up")

	p, err := ParseCmdline("banger.image=vda banger.layer=vdb banger.ip=172.30.0.5/24 banger.gw=172.30.0.1 banger.mac=02:fc:00:00:00:05")
	if err != nil {
		t.Fatal(err)
	}
	// The thread that enters the namespace is never unlocked, so it dies
	// with the goroutine instead of returning to the pool.
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			done <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		for range 2 { // the second time finds everything in place
			name, err := configureNetwork(t.Context(), p)
			if err != nil {
				done <- err
				return
			}
			if name != "guest0" {
				done <- fmt.Errorf("configured %q, want guest0", name)
				return
			}
		}
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		argv []string
		want string
	}{
		{[]string{"ip", "-n", ns, "-4", "-o", "addr", "show", "dev", "guest0"}, "inet 172.30.0.5/24 brd 172.30.0.255 scope global guest0"},
		{[]string{"ip", "-n", ns, "route", "show", "default"}, "default via 172.30.0.1 dev guest0"},
		{[]string{"ip", "-n", ns, "-o", "link", "show", "dev", "guest0"}, "state UP"},
		{[]string{"ip", "-n", ns, "-o", "link", "show", "dev", "lo"}, "LOOPBACK,UP"},
	}
	for _, c := range checks {
		if out := run(t, c.argv...); !strings.Contains(out, c.want) {
			t.Errorf("%v:\n%s\nwant %q", c.argv, out, c.want)
		}
	}
}

func TestBroadcast(t *testing.T) {
	for in, want := range map[string]string{"172.30.0.5/24": "172.30.0.255", "10.1.2.3/8": "10.255.255.255", "192.168.7.9/30": "192.168.7.11"} {
		if got := broadcast(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("broadcast(%s) = %s, want %s", in, got, want)
		}
	}
}
