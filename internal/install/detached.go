package install

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/banger/banger/internal/atomicfile"
)

// On hosts without systemd, `system install` starts `banger system run` in
// its own session (detached from the terminal) and records its pid here, so
// restart, status and uninstall can find it.
func supervisorPIDFile(o Options) string { return filepath.Join(o.Layout.HelperDir, "supervisor.pid") }

// DirectLog is where the detached supervisor writes both daemons' logs.
const DirectLog = "/var/log/banger.log"

// startDetached launches `banger system run` detached and waits for bangerd.
func startDetached(ctx context.Context, o Options) error {
	if pid, ok := SupervisorPID(o); ok {
		return fmt.Errorf("banger system run is already running (pid %d)", pid)
	}
	if err := os.MkdirAll(o.Layout.HelperDir, 0o711); err != nil {
		return err
	}
	logf, err := os.OpenFile(DirectLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"system", "run", "--owner", strconv.Itoa(o.Owner.UID), "--bin-dir", o.BinDir}
	if o.Owner.UID == 0 {
		args = append(args, "--allow-root")
	}
	cmd := exec.Command(filepath.Join(o.BinDir, "banger"), args...)
	cmd.Env = append(os.Environ(), o.Layout.Env()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start banger system run: %w", err)
	}
	pid := cmd.Process.Pid
	cmd.Process.Release()
	if err := atomicfile.Write(supervisorPIDFile(o), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "started both daemons without systemd (pid %d, log %s)\n", pid, DirectLog)
	if o.Ready == nil {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := o.Ready(wctx); err != nil {
		return fmt.Errorf("bangerd did not answer: %w (see %s)", err, DirectLog)
	}
	fmt.Fprintln(o.Out, "bangerd is ready")
	return nil
}

// SupervisorPID returns the pid of a detached `banger system run`, if alive.
func SupervisorPID(o Options) (int, bool) {
	b, err := os.ReadFile(supervisorPIDFile(o))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "system\x00run") {
		return 0, false
	}
	return pid, true
}

// stopDetached stops a detached supervisor (the daemons stop with it; VMs
// do not).
func stopDetached(o Options) error {
	pid, ok := SupervisorPID(o)
	if !ok {
		os.Remove(supervisorPIDFile(o))
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	for range 200 {
		if syscall.Kill(pid, 0) != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	os.Remove(supervisorPIDFile(o))
	return nil
}
