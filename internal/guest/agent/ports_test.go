package agent

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const (
	procTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A2C4 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 100 0 0 10 0
`
	procTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 5555 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6666 1 0000000000000000 100 0 0 10 0
`
	procUDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7777 2 0000000000000000 0
  101: 0100007F:D431 08080808:0035 01 00000000:00000000 00:00000000 00000000     0        0 8888 2 0000000000000000 0
`
)

func TestListPortsFromFixture(t *testing.T) {
	proc := t.TempDir()
	writeFiles(t, proc, map[string]string{
		"net/tcp":   procTCP,
		"net/tcp6":  procTCP6,
		"net/udp":   procUDP,
		"321/comm":  "nginx\n",
		"654/comm":  "sshd\n",
		"self/comm": "ignored\n",
	})
	// No udp6 table: an IPv6-less kernel.
	for pid, socks := range map[string][]string{"321": {"1111", "6666"}, "654": {"3333", "4444"}} {
		fd := filepath.Join(proc, pid, "fd")
		os.MkdirAll(fd, 0o755)
		os.Symlink("/dev/null", filepath.Join(fd, "0"))
		for i, inode := range socks {
			if err := os.Symlink("socket:["+inode+"]", filepath.Join(fd, string(rune('3'+i)))); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := listPorts(proc)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	want := []Port{
		{Proto: "tcp", Address: a("0.0.0.0"), Port: 22, PID: 654, Process: "sshd"},
		{Proto: "tcp", Address: a("::"), Port: 22, PID: 654, Process: "sshd"},
		{Proto: "tcp", Address: a("::1"), Port: 53},
		{Proto: "tcp", Address: a("127.0.0.1"), Port: 80, PID: 321, Process: "nginx"},
		{Proto: "tcp", Address: a("127.0.0.1"), Port: 8080, PID: 321, Process: "nginx"},
		{Proto: "udp", Address: a("0.0.0.0"), Port: 68},
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(Port{}), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
}

func TestPortsFindsARealListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Skip("no procfs:", err)
	}
	c := serveUnix(t, New(Config{}), ClientConfig{})
	ports, err := c.Ports(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	want := Port{Proto: "tcp", Address: netip.MustParseAddr("127.0.0.1"), Port: port, PID: os.Getpid(), Process: strings.TrimSpace(string(comm))}
	for _, p := range ports {
		if p.Port == port && p.Proto == "tcp" {
			if diff := cmp.Diff(want, p, cmpopts.IgnoreUnexported(Port{}), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
				t.Errorf("listener (-want +got):\n%s", diff)
			}
			return
		}
	}
	t.Errorf("port %d not among %+v", port, ports)
}
