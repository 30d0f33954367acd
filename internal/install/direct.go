package install

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/banger/banger/internal/paths"
	"github.com/banger/banger/internal/wire"
	"golang.org/x/sys/unix"
)

// DirectOptions run both daemons without systemd: for containers, CI and the
// e2e harness. The caller is root.
type DirectOptions struct {
	Owner  Owner
	Layout paths.Layout
	// BinDir holds bangerd and bangerd-root.
	BinDir string
	// Log receives both daemons' output, each line prefixed with its name.
	Log io.Writer
	// ExtraEnv is added to both daemons' environment.
	ExtraEnv []string
	// Ready is called once both sockets answer.
	Ready func()
	// NetNS, when set, names a network namespace (ip netns add NAME) that
	// holds the VMs' network: bangerd runs inside it (so its VMMs and DNS
	// do), and bangerd-root makes the bridge, taps and NAT rules there while
	// itself staying in the host's namespace (image builds download from
	// Debian's archive). The end-to-end tests run this way.
	NetNS string
}

// RunDirect starts bangerd-root as root and bangerd as the owner, waits for
// both sockets, and supervises them until ctx is done or one exits; then it
// stops the other with SIGTERM. Like the systemd units, stopping the
// daemons never stops VMs: the VMMs run in their own sessions.
func RunDirect(ctx context.Context, o DirectOptions) error {
	if err := requireRoot("system run"); err != nil {
		return err
	}
	l := o.Layout
	for _, d := range []struct {
		dir      string
		mode     os.FileMode
		uid, gid int
	}{
		{l.StateDir, 0o700, o.Owner.UID, o.Owner.GID},
		{l.CacheDir, 0o700, o.Owner.UID, o.Owner.GID},
		{l.RuntimeDir, 0o700, o.Owner.UID, o.Owner.GID},
		{l.HelperDir, 0o711, 0, 0},
	} {
		if err := wire.EnsureDir(d.dir, d.mode, d.uid, d.gid); err != nil {
			return fmt.Errorf("prepare %s: %w", d.dir, err)
		}
	}
	env := append(os.Environ(), l.Env()...)
	env = append(env, o.ExtraEnv...)

	helperArgs := []string{"--owner-uid", strconv.Itoa(o.Owner.UID), "--owner-gid", strconv.Itoa(o.Owner.GID)}
	if o.NetNS != "" {
		helperArgs = append(helperArgs, "--netns", netnsPath(o.NetNS))
	}
	helper := exec.Command(filepath.Join(o.BinDir, paths.HelperBinary), helperArgs...)
	helper.Env = env
	daemonArgs := []string{}
	if o.Owner.UID == 0 {
		daemonArgs = append(daemonArgs, "--allow-root")
	}
	daemon := exec.Command(filepath.Join(o.BinDir, paths.DaemonBinary), daemonArgs...)
	daemon.Env = append(env, "HOME="+o.Owner.Home, "USER="+o.Owner.User, "LOGNAME="+o.Owner.User)
	daemon.Dir = "/"
	groups := supplementaryGroups(o.Owner)
	daemon.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(o.Owner.UID), Gid: uint32(o.Owner.GID), Groups: groups},
		Setpgid:    true,
	}
	helper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}

	var wg sync.WaitGroup
	exited := make(chan error, 2)
	start := func(name string, c *exec.Cmd, netns string) error {
		pr, pw := io.Pipe()
		c.Stdout, c.Stderr = pw, pw
		if err := startIn(netns, c); err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				fmt.Fprintf(o.Log, "%s: %s\n", name, sc.Text())
			}
		}()
		go func() {
			err := c.Wait()
			pw.Close()
			if err == nil {
				err = errors.New("exited")
			}
			exited <- fmt.Errorf("%s: %w", name, err)
		}()
		return nil
	}
	stop := func(c *exec.Cmd) {
		if c.Process != nil && c.ProcessState == nil {
			c.Process.Signal(syscall.SIGTERM)
		}
	}
	if err := start(paths.HelperBinary, helper, ""); err != nil {
		return err
	}
	if err := waitSocket(ctx, l.HelperSocket(), exited); err != nil {
		stop(helper)
		return err
	}
	if err := start(paths.DaemonBinary, daemon, o.NetNS); err != nil {
		stop(helper)
		return err
	}
	if err := waitSocket(ctx, l.DaemonSocket(), exited); err != nil {
		stop(daemon)
		stop(helper)
		return err
	}
	if o.Ready != nil {
		o.Ready()
	}
	var err error
	pending := 2
	select {
	case <-ctx.Done():
	case err = <-exited:
		pending--
	}
	stop(daemon)
	stop(helper)
	deadline := time.After(15 * time.Second)
	for range pending {
		select {
		case <-exited:
		case <-deadline:
			daemon.Process.Kill()
			helper.Process.Kill()
		}
	}
	wg.Wait()
	return err
}

func supplementaryGroups(o Owner) []uint32 {
	u, err := user.LookupId(strconv.Itoa(o.UID))
	if err != nil {
		return nil
	}
	ids, _ := u.GroupIds()
	var gs []uint32
	for _, id := range ids {
		if n, err := strconv.Atoi(id); err == nil {
			gs = append(gs, uint32(n))
		}
	}
	if g, err := user.LookupGroup("kvm"); err == nil {
		if n, err := strconv.Atoi(g.Gid); err == nil {
			gs = append(gs, uint32(n))
		}
	}
	return gs
}

// waitSocket polls until something accepts connections on path, a child
// exits, or 20 s pass.
func waitSocket(ctx context.Context, path string, exited <-chan error) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("waiting for %s: %w", path, err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing answers on %s after 20s", path)
		}
	}
}

// netnsPath is where `ip netns add NAME` keeps a namespace.
func netnsPath(name string) string { return filepath.Join("/run/netns", name) }

// startIn starts c inside the named network namespace (or the current one
// when netns is empty). A forked child inherits the namespace of the
// thread that forks it, so the thread switches, forks, and switches back.
func startIn(netns string, c *exec.Cmd) error {
	if netns == "" {
		return c.Start()
	}
	target, err := os.Open(netnsPath(netns))
	if err != nil {
		return fmt.Errorf("network namespace %q: %w (create it with: ip netns add %s)", netns, err, netns)
	}
	defer target.Close()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return err
	}
	defer self.Close()
	runtime.LockOSThread()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %q: %w", netns, err)
	}
	startErr := c.Start()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it is in the wrong namespace and must
		// die with its goroutine rather than run other code.
		return errors.Join(startErr, fmt.Errorf("return to own network namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return startErr
}
