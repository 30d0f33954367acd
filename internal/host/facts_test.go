package host

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// tree builds a fake root: paths ending in "/" are directories, "=sock"
// makes a unix socket, anything else is a file with that content.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(name, "/"):
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case content == "=sock":
			l, err := net.Listen("unix", p)
			if err != nil {
				t.Fatal(err)
			}
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			l.Close()
		default:
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func TestSystemdIsPID1(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  bool
	}{
		{"systemd", map[string]string{"proc/1/comm": "systemd\n", "run/systemd/system/": ""}, true},
		{"no /run/systemd/system", map[string]string{"proc/1/comm": "systemd\n", "run/systemd/": ""}, false},
		{"system is a file", map[string]string{"proc/1/comm": "systemd\n", "run/systemd/system": ""}, false},
		{"container init", map[string]string{"proc/1/comm": "tini\n", "run/systemd/system/": ""}, false},
		{"nothing", map[string]string{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := systemdIsPID1(tree(t, tt.files)); got != tt.want {
				t.Errorf("systemdIsPID1 = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestResolvedRunning(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  bool
	}{
		{"stub", map[string]string{"run/systemd/resolve/stub-resolv.conf": "nameserver 127.0.0.53\n"}, true},
		{"socket", map[string]string{"run/systemd/resolve/io.systemd.Resolve": "=sock"}, true},
		{"socket name is a file", map[string]string{"run/systemd/resolve/io.systemd.Resolve": ""}, false},
		{"empty dir", map[string]string{"run/systemd/resolve/": ""}, false},
		{"nothing", map[string]string{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolvedRunning(tree(t, tt.files)); got != tt.want {
				t.Errorf("resolvedRunning = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMemTotal(t *testing.T) {
	tests := []struct {
		name, meminfo string
		want          uint64
		err           string
	}{
		{"debian", "MemTotal:       24634324 kB\nMemFree:        20000000 kB\n", 24634324 * 1024, ""},
		{"not first", "MemFree: 1 kB\nMemTotal: 2048 kB\n", 2048 * 1024, ""},
		{"missing", "MemFree: 1 kB\n", 0, "parse meminfo: no MemTotal"},
		{"bad unit", "MemTotal: 2048 MB\n", 0, `parse meminfo: MemTotal "2048 MB"`},
		{"bad number", "MemTotal: x kB\n", 0, `parse meminfo: strconv.ParseUint: parsing "x": invalid syntax`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := memTotal(strings.NewReader(tt.meminfo))
			var gotErr string
			if err != nil {
				gotErr = err.Error()
			}
			if got != tt.want || gotErr != tt.err {
				t.Errorf("memTotal = %d, %q; want %d, %q", got, gotErr, tt.want, tt.err)
			}
		})
	}
	if Memory() == 0 {
		t.Error("Memory() = 0 on a Linux host")
	}
}

func TestPortFree(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpAddr, udpAddr := tcp.Addr().String(), udp.LocalAddr().String()

	if err := TCPFree(tcpAddr); err == nil || !strings.HasPrefix(err.Error(), "tcp "+tcpAddr+" not free: ") {
		t.Errorf("TCPFree(bound %s) = %v", tcpAddr, err)
	}
	if err := UDPFree(udpAddr); err == nil || !strings.HasPrefix(err.Error(), "udp "+udpAddr+" not free: ") {
		t.Errorf("UDPFree(bound %s) = %v", udpAddr, err)
	}
	tcp.Close()
	udp.Close()
	if err := TCPFree(tcpAddr); err != nil {
		t.Errorf("TCPFree(released %s) = %v", tcpAddr, err)
	}
	if err := UDPFree(udpAddr); err != nil {
		t.Errorf("UDPFree(released %s) = %v", udpAddr, err)
	}
}

func TestArch(t *testing.T) {
	got := Arch()
	if !strings.HasPrefix(got, runtime.GOARCH+" (") || !strings.HasSuffix(got, ")") || len(got) <= len(runtime.GOARCH)+3 {
		t.Errorf("Arch() = %q, want %q followed by the uname machine", got, runtime.GOARCH)
	}
}

func TestIsCharDevice(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{"/dev/null": true, file: false, filepath.Dir(file): false, "/nonexistent": false} {
		if got := isCharDevice(path); got != want {
			t.Errorf("isCharDevice(%s) = %v, want %v", path, got, want)
		}
	}
	_, err := os.Stat("/dev/net/tun")
	if got := HasTunDevice(); got != (err == nil) {
		t.Errorf("HasTunDevice() = %v but stat /dev/net/tun: %v", got, err)
	}
}
