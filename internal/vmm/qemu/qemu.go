package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/banger/banger/internal/vmm"
)

// Name is the backend's name in records.
const Name = "qemu"

// DefaultStartTimeout bounds how long Start waits for QEMU to answer on
// QMP. QEMU gets there in well under a second; the guest boot is not part
// of it.
const DefaultStartTimeout = 10 * time.Second

// Config configures the backend.
type Config struct {
	// Binary is the qemu-system-x86_64 to run (an absolute path, from
	// host.Look).
	Binary string
	Logger *slog.Logger
	// StartTimeout: DefaultStartTimeout when zero.
	StartTimeout time.Duration
	// NoSandbox drops -sandbox, for QEMU builds without seccomp.
	NoSandbox bool
}

// Backend starts and adopts QEMU VMs.
type Backend struct {
	cfg Config
}

// New returns the backend.
func New(cfg Config) *Backend {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	return &Backend{cfg: cfg}
}

var _ vmm.Backend = (*Backend)(nil)

// Name is "qemu".
func (b *Backend) Name() string { return Name }

// Start runs QEMU for spec and returns once QEMU answers on QMP; the guest
// is booting then. QEMU runs in its own session with its output in
// RunDir/qemu.log, so neither a terminal's Ctrl-C nor the daemon's exit
// reaches it. ctx bounds only the start: cancelling it later leaves the VM
// running.
// Its errors name no VM: the caller's ("start vm %q: ...") does.
func (b *Backend) Start(ctx context.Context, spec vmm.Spec) (*vmm.Machine, error) {
	return b.start(ctx, spec)
}

func (b *Backend) start(ctx context.Context, spec vmm.Spec) (*vmm.Machine, error) {
	if !filepath.IsAbs(b.cfg.Binary) {
		return nil, fmt.Errorf("qemu binary %q is not an absolute path", b.cfg.Binary)
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if err := vmm.InputsExist(spec); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(spec.RunDir, 0o700); err != nil {
		return nil, err
	}
	qmpPath := QMPSocket(spec.RunDir)
	if err := vmm.ClearSocket(ctx, qmpPath); err != nil {
		return nil, err
	}
	if err := vmm.ClearSocket(ctx, spec.AgentSocket); err != nil {
		return nil, err
	}

	logPath := LogFile(spec.RunDir)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	args := Args(spec, Options{Sandbox: !b.cfg.NoSandbox})
	cmd := &exec.Cmd{
		Path:   b.cfg.Binary,
		Args:   append([]string{b.cfg.Binary}, args...),
		Stdout: logf,
		Stderr: logf,
		// Its own session: no controlling terminal, no process group
		// shared with the daemon.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if spec.NIC != nil && spec.NIC.FD != nil {
		cmd.ExtraFiles = []*os.File{spec.NIC.FD} // fd 3, see tapFD
	}
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return nil, err
	}
	m, err := vmm.NewChild(vmm.ChildConfig{
		Backend:       Name,
		Cmd:           cmd,
		ControlSocket: qmpPath,
		AgentSocket:   spec.AgentSocket,
		Log:           logPath,
		Control:       control{qmpPath},
	})
	if err != nil {
		return nil, err
	}
	b.cfg.Logger.Debug("qemu started", "vm", spec.Name, "pid", m.PID(), "argv", cmd.Args)

	version, err := b.awaitQMP(ctx, m, qmpPath)
	if err != nil {
		m.Kill()
		// Reaping is quick after SIGKILL; bounded all the same.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		m.Wait(wctx)
		if tail := vmm.LogTail(logPath, 5); tail != "" {
			err = fmt.Errorf("%w; %s: %s", err, logPath, tail)
		}
		return nil, err
	}
	b.cfg.Logger.Info("qemu ready", "vm", spec.Name, "pid", m.PID(), "qemu", version, "accel", spec.Accel)
	return m, nil
}

// awaitQMP polls for the QMP socket until QEMU answers, exits, or the
// start timeout passes, and returns QEMU's version.
func (b *Backend) awaitQMP(ctx context.Context, m *vmm.Machine, path string) (string, error) {
	tctx, cancel := context.WithTimeout(ctx, b.cfg.StartTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if !m.Alive() {
			return "", errors.New("qemu exited during start")
		}
		if _, err := os.Stat(path); err == nil {
			// The file appears at bind(), a moment before listen():
			// a refused connection is retried.
			version, err := handshake(tctx, path)
			if err == nil {
				return version, nil
			}
			lastErr = err
		}
		select {
		case <-tctx.Done():
			switch {
			case ctx.Err() != nil:
				return "", fmt.Errorf("interrupted while qemu started: %w", ctx.Err())
			case lastErr != nil:
				return "", fmt.Errorf("qemu did not answer on QMP within %v: %w", b.cfg.StartTimeout, lastErr)
			}
			return "", fmt.Errorf("qemu did not open its QMP socket within %v", b.cfg.StartTimeout)
		case <-tick.C:
		}
	}
}

func handshake(ctx context.Context, path string) (string, error) {
	q, err := DialQMP(ctx, path)
	if err != nil {
		return "", err
	}
	defer q.Close()
	return q.Version(ctx)
}

// Adopt finds a QEMU that an earlier daemon started.
func (b *Backend) Adopt(rec vmm.Record) (*vmm.Machine, error) {
	if rec.Backend != Name {
		return nil, fmt.Errorf("adopt pid %d: record is for backend %q, not %q", rec.PID, rec.Backend, Name)
	}
	return vmm.Adopt(rec, control{rec.ControlSocket})
}

// control reaches a VM's QMP socket, one connection per request.
type control struct{ path string }

func (c control) Powerdown(ctx context.Context) error {
	q, err := DialQMP(ctx, c.path)
	if err != nil {
		return err
	}
	defer q.Close()
	return q.Powerdown(ctx)
}
