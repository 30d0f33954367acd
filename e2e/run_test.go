package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// dig asks the daemon's DNS server (in the env's namespace) for NAME.vm.
func (e *Env) dig(name string) string {
	e.t.Helper()
	out, _ := exec.Command("ip", "netns", "exec", e.NS, "dig", "+short", "+time=2", "+tries=1", "@127.0.0.1", "-p", "42069", name+".vm").Output()
	return strings.TrimSpace(string(out))
}

// outside makes a second namespace standing for the world beyond the host,
// joined to the env's namespace by a veth pair, with an HTTP server on
// 198.51.100.2:8081. It returns the server's URL.
func (e *Env) outside(t *testing.T) string {
	t.Helper()
	out := e.NS + "-out"
	run := func(args ...string) {
		t.Helper()
		if b, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, b)
		}
	}
	run("ip", "netns", "add", out)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", out).Run() })
	run("ip", "link", "add", "bgeup0", "netns", e.NS, "type", "veth", "peer", "name", "bgeout0", "netns", out)
	run("ip", "-n", e.NS, "addr", "add", "198.51.100.1/24", "dev", "bgeup0")
	run("ip", "-n", e.NS, "link", "set", "bgeup0", "up")
	run("ip", "-n", out, "addr", "add", "198.51.100.2/24", "dev", "bgeout0")
	run("ip", "-n", out, "link", "set", "bgeout0", "up")
	run("ip", "-n", out, "link", "set", "lo", "up")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "index.html"), []byte("hello from outside\n"), 0o644)
	srv := exec.Command("ip", "netns", "exec", out, "python3", "-m", "http.server", "8081", "--bind", "198.51.100.2", "--directory", dir)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	time.Sleep(time.Second)
	return "http://198.51.100.2:8081/"
}

// TestVMRun covers the one-command experience: vm run in its shapes, ssh,
// DNS, port forwarding and NAT, with real guests and the real ssh client.
func TestVMRun(t *testing.T) {
	requireBase(t)
	requireVM(t)
	for _, tool := range []string{"ssh", "dig", "python3"} {
		_, err := exec.LookPath(tool)
		require(t, err == nil, tool+" not installed")
	}
	e := newEnv(t)
	e.Start()
	if r := e.CLI("image", "pull"); r.Code != 0 {
		t.Fatalf("image pull: %s", r)
	}

	t.Run("run --rm passes streams and exit code and leaves nothing", func(t *testing.T) {
		r := e.CLI(append(append([]string{"vm", "run", "--rm", "--name", "once"}, smallVM...), "--", "sh", "-c", "echo out; echo err >&2; exit 42")...)
		if r.Code != 42 || r.Stdout != "out\n" || !strings.Contains(r.Stderr, "err\n") {
			t.Errorf("want 42, out on stdout, err on stderr: %s", r)
		}
		if !strings.HasPrefix(r.Stderr, "spec: ") {
			t.Errorf("the spec line must come first: %s", r)
		}
		if l := e.CLI("vm", "list", "--json"); strings.Contains(l.Stdout, "once") {
			t.Errorf("--rm left the VM: %s", l)
		}
		if out := e.IP("link"); strings.Contains(out, "bgtap") {
			t.Errorf("--rm left a tap:\n%s", out)
		}
	})

	t.Run("invalid spec creates nothing", func(t *testing.T) {
		for _, args := range [][]string{{"--vcpu", "0"}, {"--name", "Bad_Name"}, {"-d", "--rm"}, {"-d", "--", "true"}, {"-p", "nonsense"}} {
			r := e.CLI(append([]string{"vm", "run"}, args...)...)
			if r.Code == 0 || strings.Contains(r.Stderr, "spec:") && !strings.Contains(strings.Join(args, " "), "Bad_Name") {
				t.Errorf("vm run %v: %s", args, r)
			}
		}
		if l := e.CLI("vm", "list", "--json"); strings.TrimSpace(l.Stdout) != "[]" {
			t.Errorf("something was created: %s", l.Stdout)
		}
	})

	r := e.CLI(append([]string{"vm", "run", "-d", "--name", "web", "-p", "18080:8000"}, smallVM...)...)
	if r.Code != 0 {
		t.Fatalf("vm run -d: %s", r)
	}
	t.Run("vm ssh after -d", func(t *testing.T) {
		r := e.CLI("vm", "ssh", "web", "--", "hostname")
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != "web" {
			t.Errorf("vm ssh web -- hostname: %s", r)
		}
	})
	ip := e.vmJSON("web")["ip"].(string)
	t.Run("dns answers NAME.vm", func(t *testing.T) {
		if got := e.dig("web"); got != ip {
			t.Errorf("dig web.vm = %q, want %s", got, ip)
		}
		if got := e.dig("nosuchvm"); got != "" {
			t.Errorf("dig nosuchvm.vm = %q, want nothing", got)
		}
	})
	t.Run("a web server in the guest is reached through -p", func(t *testing.T) {
		srv := `exec perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalPort=>8000,Listen=>5,ReuseAddr=>1) or die; while($c=$s->accept){<$c>; print $c "HTTP/1.0 200 OK\r\n\r\nhello from the guest\n"; close $c}'`
		go e.CLI("vm", "exec", "web", "--", "sh", "-c", srv+" >/dev/null 2>&1")
		var body string
		for range 40 {
			out, _ := exec.Command("ip", "netns", "exec", e.NS, "curl", "-sS", "-m", "3", "http://127.0.0.1:18080/").Output()
			if body = string(out); strings.Contains(body, "hello from the guest") {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if !strings.Contains(body, "hello from the guest") {
			t.Errorf("through -p 18080:8000 got %q", body)
		}
		ports := e.CLI("vm", "ports", "web")
		mustContain(t, ports, "8000", "web.vm:8000")
	})
	t.Run("port-forward adds a forward to a running VM", func(t *testing.T) {
		if r := e.CLI("vm", "port-forward", "web", "18081:8000"); r.Code != 0 {
			t.Fatalf("vm port-forward: %s", r)
		}
		out, _ := exec.Command("ip", "netns", "exec", e.NS, "curl", "-sS", "-m", "3", "http://127.0.0.1:18081/").Output()
		if !strings.Contains(string(out), "hello from the guest") {
			t.Errorf("through port-forward 18081:8000 got %q", out)
		}
	})
	t.Run("nat lets the guest out, and only with nat", func(t *testing.T) {
		url := e.outside(t)
		curl := []string{"vm", "exec", "web", "--", "curl", "-sS", "-m", "5", url}
		if r := e.CLI(curl...); r.Code == 0 {
			t.Errorf("without --nat the guest reached the outside: %s", r)
		}
		if r := e.CLI("vm", "set", "web", "--nat"); r.Code != 0 {
			t.Fatalf("vm set --nat: %s", r)
		}
		if r := e.CLI(curl...); r.Code != 0 || !strings.Contains(r.Stdout, "hello from outside") {
			t.Errorf("with --nat: %s", r)
		}
		if r := e.CLI("vm", "set", "web", "--nat=false"); r.Code != 0 {
			t.Fatalf("vm set --nat=false: %s", r)
		}
		if r := e.CLI(curl...); r.Code == 0 {
			t.Errorf("after --nat=false the guest still reached the outside: %s", r)
		}
	})

	t.Run("a bare vm run reaches a shell prompt", func(t *testing.T) {
		cmd := exec.Command("ip", append([]string{"netns", "exec", e.NS, filepath.Join(binDir, "banger"), "vm", "run", "--name", "peer"}, smallVM...)...)
		cmd.Env = append(e.env(), "TERM=xterm")
		f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var seen syncBuffer
		lines := make(chan struct{}, 1)
		readerDone := make(chan struct{})
		go func() {
			defer close(readerDone)
			br := bufio.NewReader(f)
			buf := make([]byte, 4096)
			for {
				n, err := br.Read(buf)
				seen.Write(buf[:n])
				select {
				case lines <- struct{}{}:
				default:
				}
				if err != nil {
					return
				}
			}
		}()
		waitFor := func(re *regexp.Regexp, d time.Duration) bool {
			deadline := time.Now().Add(d)
			for time.Now().Before(deadline) {
				if re.Match(seen.Bytes()) {
					return true
				}
				select {
				case <-lines:
				case <-readerDone:
					return re.Match(seen.Bytes())
				case <-time.After(200 * time.Millisecond):
				}
			}
			return false
		}
		if !waitFor(regexp.MustCompile(`root@peer:~# `), 4*time.Minute) {
			t.Fatalf("no shell prompt; the terminal showed:\n%s", seen.String())
		}
		fmt.Fprintf(f, "echo sum=$((40+2))\n")
		if !waitFor(regexp.MustCompile(`sum=42`), 30*time.Second) {
			t.Errorf("command in the session did not run:\n%s", seen.String())
		}
		t.Run("two VMs reach each other by name", func(t *testing.T) {
			r := e.CLI("vm", "exec", "peer", "--", "getent", "hosts", "web.vm")
			if !strings.Contains(r.Stdout, ip) {
				t.Errorf("peer resolves web.vm to %q, want %s: %s", r.Stdout, ip, r)
			}
			if r := e.CLI("vm", "exec", "peer", "--", "ping", "-c", "1", "-W", "5", "web.vm"); r.Code != 0 {
				t.Errorf("peer cannot reach web.vm: %s", r)
			}
		})
		fmt.Fprintf(f, "exit\n")
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Errorf("vm run did not return after exit")
		}
		if !strings.Contains(seen.String(), "still running") {
			t.Errorf("after the session banger must say the VM is still running and how to stop it:\n%s", seen.String())
		}
		e.CLI("vm", "delete", "peer")
	})

	t.Run("ctrl-c during run --rm still deletes", func(t *testing.T) {
		cmd := exec.Command("ip", append(append([]string{"netns", "exec", e.NS, filepath.Join(binDir, "banger"), "vm", "run", "--rm", "--name", "interrupted"}, smallVM...), "--", "sleep", "600")...)
		cmd.Env = e.env()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(4 * time.Minute)
		for time.Now().Before(deadline) {
			if r := e.CLI("vm", "exec", "interrupted", "--", "pgrep", "-x", "sleep"); r.Code == 0 {
				break
			}
			time.Sleep(time.Second)
		}
		// ip netns exec passes the signal on to banger.
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(90 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("vm run did not return after Ctrl-C:\n%s", stderr.String())
		}
		if r := e.CLI("vm", "show", "interrupted"); r.Code == 0 {
			t.Errorf("--rm did not delete after Ctrl-C: %s\n%s", r, stderr.String())
		}
	})
	t.Run("dns stops answering after delete", func(t *testing.T) {
		if r := e.CLI("vm", "delete", "web"); r.Code != 0 {
			t.Fatal(r)
		}
		if got := e.dig("web"); got != "" {
			t.Errorf("dig web.vm after delete = %q", got)
		}
		if out, _ := exec.Command("ip", "netns", "exec", e.NS, "curl", "-sS", "-m", "2", "http://127.0.0.1:18080/").CombinedOutput(); bytes.Contains(out, []byte("hello")) {
			t.Errorf("the forward outlived the VM: %s", out)
		}
	})
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

func (s *syncBuffer) String() string { return string(s.Bytes()) }
