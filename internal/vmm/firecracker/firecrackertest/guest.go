package firecrackertest

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// AgentPort is the guest vsock port the emulated guest's agent listens on
// (banger-agent's default).
const AgentPort = 1024

// firstHostPort is where Firecracker starts numbering the host side of
// host-initiated vsock connections, which its "OK <port>" reports.
const firstHostPort = 1 << 30

type spawnRequest struct {
	cmd  *exec.Cmd
	done chan error
}

// spawner starts every child from one thread that lives as long as the
// fake: a child's parent-death signal is tied to the thread that forked
// it, and Go may otherwise retire that thread.
func (f *fake) spawner() {
	runtime.LockOSThread()
	for req := range f.spawn {
		req.done <- req.cmd.Start()
	}
}

// guest is the emulated guest: a banger-agent on the host, or nothing.
type guest struct {
	f    *fake
	sock string // the agent's listening socket
	cmd  *exec.Cmd
	// halted: the guest powered off; its vCPUs would spin in hlt, and
	// Firecracker (on x86) keeps running.
	halted  atomic.Bool
	killed  atomic.Bool
	stopped chan struct{} // closed when the agent has exited
}

// startGuest boots (or, restored from a snapshot, resumes) the emulated
// guest. The caller holds f.mu and has checked what InstanceStart checks.
func (f *fake) startGuest() error {
	g := &guest{f: f, stopped: make(chan struct{})}
	if b := f.vm.BootSource; b != nil {
		fmt.Printf("[fake guest] booting %s with %q\n", b.KernelImagePath, f.bootArgs())
	}
	if f.cfg.Agent != "" {
		dir := os.TempDir()
		if f.vm.Vsock != nil {
			dir = filepath.Dir(f.in(f.vm.Vsock.UDSPath))
		}
		g.sock = filepath.Join(dir, "fg"+strconv.Itoa(os.Getpid())+".sock")
		os.Remove(g.sock)
		root, proc, err := f.guestFiles(filepath.Join(dir, "fake-guest"))
		if err != nil {
			return fmt.Errorf("fake guest: %w", err)
		}
		g.cmd = &exec.Cmd{
			Path:   f.cfg.Agent,
			Args:   []string{f.cfg.Agent, "--listen", "unix:" + g.sock, "--root", root, "--proc", proc},
			Stdout: os.Stdout, // the guest's console is Firecracker's stdout
			Stderr: os.Stdout,
			SysProcAttr: &syscall.SysProcAttr{
				Setpgid:   true,
				Pdeathsig: syscall.SIGKILL,
			},
		}
		done := make(chan error, 1)
		f.spawn <- spawnRequest{cmd: g.cmd, done: done}
		if err := <-done; err != nil {
			return fmt.Errorf("fake guest: start %s: %w", f.cfg.Agent, err)
		}
		go g.wait()
	} else {
		close(g.stopped)
	}
	f.guest = g
	f.state = stateRunning
	close(f.booted)
	return nil
}

// guestFiles lays out what the emulated guest shows through its agent: a
// file system with /root and an ssh host key (derived from the VM id, so
// that it stays the same across boots, as a guest's key stays on its
// disk), and a procfs with sshd listening on port 22, a boot id, the
// hostname from banger.hostname= and an uptime.
func (f *fake) guestFiles(dir string) (root, proc string, err error) {
	root, proc = filepath.Join(dir, "root"), filepath.Join(dir, "proc")
	os.RemoveAll(dir)
	hostname := f.opts.id
	for _, a := range strings.Fields(f.bootArgs()) {
		if h, ok := strings.CutPrefix(a, "banger.hostname="); ok {
			hostname = h
		}
	}
	seed := sha256.Sum256([]byte("fake guest host key " + f.opts.id))
	pub := ed25519.NewKeyFromSeed(seed[:]).Public().(ed25519.PublicKey)
	var blob []byte
	for _, part := range [][]byte{[]byte("ssh-ed25519"), pub} {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(part)))
		blob = append(blob, part...)
	}
	bootID := make([]byte, 16)
	rand.Read(bootID)
	files := map[string]string{
		"root/etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob) + " root@" + hostname + "\n",
		"root/root/.keep":                       "",
		"proc/net/tcp": "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
			"   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n",
		"proc/sys/kernel/random/boot_id": fmt.Sprintf("%x-%x-%x-%x-%x\n", bootID[0:4], bootID[4:6], bootID[6:8], bootID[8:10], bootID[10:]),
		"proc/sys/kernel/hostname":       hostname + "\n",
		"proc/uptime":                    "1.00 1.00\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", "", err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return "", "", err
		}
	}
	return root, proc, nil
}

func (f *fake) bootArgs() string {
	if b := f.vm.BootSource; b != nil && b.BootArgs != nil {
		return *b.BootArgs
	}
	return defaultBootArgs
}

// wait follows the agent: its exit is the guest's shutdown.
func (g *guest) wait() {
	err := g.cmd.Wait()
	close(g.stopped)
	os.Remove(g.sock)
	if g.killed.Load() {
		return
	}
	code := g.cmd.ProcessState.ExitCode()
	switch {
	case code == AgentRebootStatus:
		g.f.rec.add("guest: reboot: firecracker exits")
		fmt.Println("[fake guest] reboot: Restarting system")
		g.f.exit <- 0
	case code == 0:
		g.halted.Store(true)
		g.f.rec.add("guest: power off: vCPUs halted, firecracker stays up")
		fmt.Println("[fake guest] reboot: Power down")
	default:
		g.f.rec.add(fmt.Sprintf("guest: agent died (%v): the guest panics and reboots: firecracker exits", err))
		fmt.Printf("[fake guest] Kernel panic - not syncing: Attempted to kill init! (%v)\n", err)
		g.f.exit <- 0
	}
}

// ctrlAltDel is the guest's answer to Ctrl+Alt+Del: a reboot, which ends
// Firecracker. With an agent the reboot is asked of it, as systemd would
// carry it out.
func (g *guest) ctrlAltDel() {
	if g.cmd == nil || g.halted.Load() {
		if !g.halted.Load() {
			g.f.rec.add("guest: reboot: firecracker exits")
			g.f.exit <- 0
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", g.sock)
	}}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://guest/v1/shutdown", strings.NewReader(`{"reboot":true}`))
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		return
	}
	// The agent does not answer: the kernel reboots all the same.
	g.kill()
	g.f.rec.add("guest: reboot: firecracker exits")
	g.f.exit <- 0
}

// signal stops or continues the guest (pause and resume).
func (g *guest) signal(sig syscall.Signal) {
	if g == nil || g.cmd == nil || g.cmd.Process == nil {
		return
	}
	unix.Kill(-g.cmd.Process.Pid, sig)
}

// kill ends the guest with the fake.
func (g *guest) kill() {
	if g == nil || g.cmd == nil || g.cmd.Process == nil {
		return
	}
	g.killed.Store(true)
	unix.Kill(-g.cmd.Process.Pid, unix.SIGKILL)
	select {
	case <-g.stopped:
	case <-time.After(5 * time.Second):
	}
}

// bindVsock binds the hybrid vsock socket, as PUT /vsock does. The caller
// holds f.mu.
func (f *fake) bindVsock(path string) error {
	ln, err := net.Listen("unix", f.in(path))
	if err != nil {
		return err
	}
	if f.vsockLn != nil {
		f.vsockLn.Close()
	}
	f.vsockLn = ln
	go f.acceptVsock(ln)
	return nil
}

func (f *fake) acceptVsock(ln net.Listener) {
	var port atomic.Uint32
	port.Store(firstHostPort - 1)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go f.vsockConn(c, port.Add(1))
	}
}

// vsockConn handles one host-initiated connection: "CONNECT <port>\n",
// answered "OK <host port>\n" and spliced to the guest's listener, or
// closed when nothing listens there (Firecracker resets it).
func (f *fake) vsockConn(c net.Conn, hostPort uint32) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReaderSize(c, 64).ReadString('\n')
	if err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	// Until the guest runs, the device is not active: the connection waits.
	<-f.booted
	port, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "CONNECT ")
	n, perr := strconv.ParseUint(port, 10, 32)
	if !ok || perr != nil {
		f.rec.add(fmt.Sprintf("vsock: bad request %q: reset", line))
		return
	}
	f.mu.Lock()
	g := f.guest
	f.mu.Unlock()
	var guestConn net.Conn
	if n == AgentPort && g != nil && g.sock != "" && !g.halted.Load() {
		guestConn, err = net.Dial("unix", g.sock)
	} else {
		err = errors.New("nothing listens")
	}
	if err != nil {
		f.rec.add(fmt.Sprintf("vsock: CONNECT %d: reset (%v)", n, err))
		return
	}
	defer guestConn.Close()
	f.rec.add(fmt.Sprintf("vsock: CONNECT %d: OK", n))
	if _, err := fmt.Fprintf(c, "OK %d\n", hostPort); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(guestConn, c); closeWrite(guestConn); done <- struct{}{} }()
	go func() { io.Copy(c, guestConn); closeWrite(c); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if uc, ok := c.(*net.UnixConn); ok {
		uc.CloseWrite()
	}
}
