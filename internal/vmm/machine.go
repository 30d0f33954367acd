package vmm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Backend turns a Spec into a running VMM, and re-adopts one a previous
// daemon started.
type Backend interface {
	Name() string
	Start(ctx context.Context, spec Spec) (*Machine, error)
	Adopt(rec Record) (*Machine, error)
}

// Control is a backend's channel to a running VMM (QMP, Firecracker's API
// socket), used to ask the guest to power off.
type Control interface {
	Powerdown(ctx context.Context) error
}

// ErrGone means the VMM a Record describes is no longer running: its pid
// is free, or belongs to another process now.
var ErrGone = errors.New("vmm process is gone")

// Record is what a daemon stores to find a running VMM again after it
// restarts. It is plain JSON.
type Record struct {
	Backend string `json:"backend"`
	PID     int    `json:"pid"`
	// StartTime is field 22 of /proc/<pid>/stat (clock ticks after boot);
	// with BootID it tells the VMM from a later process that reused the pid.
	StartTime uint64 `json:"start_time"`
	BootID    string `json:"boot_id"`
	// ControlSocket is unique to the VM (it lies in its RunDir), and the
	// VMM's command line names it.
	ControlSocket string `json:"control_socket"`
	AgentSocket   string `json:"agent_socket"`
	// AgentVsockPort, when set, says the agent channel is Firecracker's
	// hybrid vsock: AgentSocket is its host unix socket, on which
	// "CONNECT <port>" reaches the guest's port. Zero means a virtio-serial
	// port served on AgentSocket (QEMU).
	AgentVsockPort uint32   `json:"agent_vsock_port,omitempty"`
	Log            string   `json:"log,omitempty"` // the VMM's own log
	Argv           []string `json:"argv"`
	// Jail is the chroot directory of a VMM launched through Firecracker's
	// jailer, to remove once the VMM is gone; "" otherwise.
	Jail string `json:"jail,omitempty"`
}

// Machine is a running VMM process, either started by this process or
// adopted from a Record. Its methods are safe for concurrent use.
type Machine struct {
	rec  Record
	ctl  Control
	done chan struct{} // closed once the process has exited
	kill func() error
}

// ChildConfig describes a VMM this process has just started.
type ChildConfig struct {
	Backend string
	// Cmd has been started and not waited for; the Machine reaps it.
	Cmd            *exec.Cmd
	ControlSocket  string
	AgentSocket    string
	AgentVsockPort uint32
	Log            string
	Control        Control
}

// NewChild supervises a VMM this process started. If its identity cannot
// be read the process is killed and an error returned.
func NewChild(cfg ChildConfig) (*Machine, error) {
	p := cfg.Cmd.Process
	// Read the start time before anything can reap the child: until it
	// is reaped its pid cannot be reused.
	st, err := readStat(p.Pid)
	var boot string
	if err == nil {
		boot, err = bootID()
	}
	m := &Machine{
		rec: Record{
			Backend:        cfg.Backend,
			PID:            p.Pid,
			StartTime:      st.StartTime,
			BootID:         boot,
			ControlSocket:  cfg.ControlSocket,
			AgentSocket:    cfg.AgentSocket,
			AgentVsockPort: cfg.AgentVsockPort,
			Log:            cfg.Log,
			Argv:           slices.Clone(cfg.Cmd.Args),
		},
		ctl:  cfg.Control,
		done: make(chan struct{}),
		kill: func() error {
			if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				return err
			}
			return nil
		},
	}
	go func() {
		// The exit status is not kept: an adopted VMM has none to give,
		// and the VMM's log says why it stopped.
		cfg.Cmd.Wait()
		close(m.done)
	}()
	if err != nil {
		m.kill()
		<-m.done
		return nil, fmt.Errorf("supervise %s pid %d: %w", cfg.Backend, p.Pid, err)
	}
	return m, nil
}

// Adopt finds the VMM rec describes. It refuses, with an error matching
// ErrGone, any process that is not that VMM: a pid that has exited, or was
// reused (another start time or boot), or runs another command line.
func Adopt(rec Record, ctl Control) (*Machine, error) {
	m, err := adopt(rec, ctl, true)
	if err != nil {
		return nil, fmt.Errorf("adopt %s pid %d: %w", rec.Backend, rec.PID, err)
	}
	return m, nil
}

// Watch supervises a VMM that another process started and this one did
// not (the root helper, through Firecracker's jailer). rec names it by pid
// and start time, which the starter read before it could reap it; the
// command line and boot id are read here, so call Watch once the process
// runs the VMM (after its exec). It refuses, like Adopt, any other process.
func Watch(rec Record, ctl Control) (*Machine, error) {
	argv, err := readCmdline(rec.PID)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("watch %s pid %d: %w: no such process", rec.Backend, rec.PID, ErrGone)
	}
	if err != nil {
		return nil, fmt.Errorf("watch %s pid %d: %w", rec.Backend, rec.PID, err)
	}
	boot, err := bootID()
	if err != nil {
		return nil, fmt.Errorf("watch %s pid %d: %w", rec.Backend, rec.PID, err)
	}
	rec.Argv, rec.BootID = argv, boot
	return Adopt(rec, ctl)
}

// StartTime is the start time of process pid (field 22 of its stat), which
// with the pid names it across pid reuse; 0 when it has exited.
func StartTime(pid int) uint64 {
	st, err := readStat(pid)
	if err != nil || st.exited() {
		return 0
	}
	return st.StartTime
}

// adopt without pidfds is what happens on kernels before 5.3, and in
// sandboxes that filter pidfd_open.
func adopt(rec Record, ctl Control, pidfds bool) (*Machine, error) {
	if rec.PID <= 0 || rec.StartTime == 0 || rec.ControlSocket == "" || len(rec.Argv) == 0 {
		return nil, errors.New("record lacks a pid, start time, control socket or argv")
	}
	if !slices.ContainsFunc(rec.Argv, func(a string) bool { return strings.Contains(a, rec.ControlSocket) }) {
		return nil, fmt.Errorf("record's argv does not name its control socket %s", rec.ControlSocket)
	}
	boot, err := bootID()
	if err != nil {
		return nil, err
	}
	if boot != rec.BootID {
		return nil, fmt.Errorf("%w: the host rebooted since it started", ErrGone)
	}

	// Open the pidfd first, then check who the pid is: if the process is
	// still alive after the checks, the pidfd and the checks saw the same
	// process, and every later signal through the pidfd reaches it.
	pidfd := -1
	if pidfds {
		pidfd, err = openPidfd(rec.PID)
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("%w: no such process", ErrGone)
		}
		if err != nil {
			pidfd = -1 // no pidfds here: fall back to /proc
		}
	}
	ok := false
	defer func() {
		if !ok && pidfd >= 0 {
			unix.Close(pidfd)
		}
	}()
	if err := same(rec); err != nil {
		return nil, err
	}
	if pidfd >= 0 {
		if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("%w: exited while being adopted", ErrGone)
		} else if err != nil {
			return nil, fmt.Errorf("signal pidfd: %w", err)
		}
	}

	m := &Machine{rec: rec, ctl: ctl, done: make(chan struct{})}
	if pidfd >= 0 {
		f := os.NewFile(uintptr(pidfd), "pidfd")
		m.kill = func() error { return killPidfd(f) }
		go func() {
			waitPidfd(f, rec)
			close(m.done)
		}()
	} else {
		m.kill = func() error {
			if same(rec) != nil {
				return nil
			}
			if err := unix.Kill(rec.PID, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				return err
			}
			return nil
		}
		go func() {
			pollGone(rec)
			close(m.done)
		}()
	}
	ok = true
	return m, nil
}

// same checks that rec.PID is still the live process rec describes.
func same(rec Record) error {
	st, err := readStat(rec.PID)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: no such process", ErrGone)
	}
	if err != nil {
		return err
	}
	if st.exited() {
		return fmt.Errorf("%w: exited (state %c)", ErrGone, st.State)
	}
	if st.StartTime != rec.StartTime {
		return fmt.Errorf("%w: the pid now belongs to a process started at tick %d, not %d", ErrGone, st.StartTime, rec.StartTime)
	}
	argv, err := readCmdline(rec.PID)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: no such process", ErrGone)
	}
	if err != nil {
		return err
	}
	if !slices.Equal(argv, rec.Argv) {
		return fmt.Errorf("%w: the pid now runs %q", ErrGone, strings.Join(argv, " "))
	}
	return nil
}

// openPidfd opens a pidfd the runtime's poller can wait on. PIDFD_NONBLOCK
// needs Linux 5.10, so it is set afterwards instead (pidfds exist from 5.3).
func openPidfd(pid int) (int, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	unix.CloseOnExec(fd)
	return fd, nil
}

// waitPidfd returns when the process has exited: a pidfd turns readable
// then. The runtime's poller does the waiting, so no thread is parked per
// adopted VM. It closes f.
func waitPidfd(f *os.File, rec Record) {
	defer f.Close()
	rc, err := f.SyscallConn()
	if err == nil {
		err = rc.Read(func(fd uintptr) bool {
			n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
			return n > 0 || (err != nil && err != unix.EINTR)
		})
	}
	if err != nil {
		pollGone(rec)
	}
}

// killPidfd signals through the pidfd while holding a reference to it, so
// the waiter's Close cannot free the descriptor number for reuse (by
// another VM's pidfd) under it. A closed pidfd means the process exited.
func killPidfd(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.PidfdSendSignal(int(fd), unix.SIGKILL, nil, 0)
	}); err != nil {
		return nil
	}
	if errors.Is(serr, unix.ESRCH) {
		return nil
	}
	return serr
}

// pollInterval is how often an adopted VMM is looked for in /proc where
// pidfds cannot be polled.
const pollInterval = 250 * time.Millisecond

func pollGone(rec Record) {
	for {
		err := same(rec)
		if errors.Is(err, ErrGone) {
			return
		}
		time.Sleep(pollInterval)
	}
}

// PID is the VMM's process id.
func (m *Machine) PID() int { return m.rec.PID }

// Record is what to store to adopt this VMM again later.
func (m *Machine) Record() Record {
	r := m.rec
	r.Argv = slices.Clone(r.Argv)
	return r
}

// Alive reports whether the VMM process is still running.
func (m *Machine) Alive() bool {
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Wait blocks until the VMM process has exited, or ctx is done. It does
// not report how the process ended (an adopted process has no status to
// give); the VMM's log does.
func (m *Machine) Wait(ctx context.Context) error {
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for %s pid %d: %w", m.rec.Backend, m.rec.PID, ctx.Err())
	}
}

// Kill sends SIGKILL to the VMM. Killing an exited VMM is not an error.
func (m *Machine) Kill() error {
	if !m.Alive() {
		return nil
	}
	if err := m.kill(); err != nil {
		return fmt.Errorf("kill %s pid %d: %w", m.rec.Backend, m.rec.PID, err)
	}
	return nil
}

// Shutdown asks the guest to power off (an ACPI power button press, or
// the backend's equivalent) and waits until the VMM exits or ctx is done.
// A guest that ignores the request is left running: the caller decides
// when to Kill.
func (m *Machine) Shutdown(ctx context.Context) error {
	if !m.Alive() {
		return nil
	}
	if m.ctl == nil {
		return fmt.Errorf("shut down %s pid %d: no control channel", m.rec.Backend, m.rec.PID)
	}
	if err := m.ctl.Powerdown(ctx); err != nil {
		if !m.Alive() {
			return nil // it went away while we asked
		}
		return fmt.Errorf("shut down %s pid %d: %w", m.rec.Backend, m.rec.PID, err)
	}
	if err := m.Wait(ctx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}
