// Package firecracker is the Firecracker backend of the hypervisor seam: a
// vmm.Spec becomes a firecracker process, configured and booted through its
// HTTP API socket (Client), and watched like any other VMM (vmm.Machine).
//
// The machine is configured with API calls rather than --config-file: the
// calls are the API Firecracker documents and versions, each refusal comes
// back as a fault_message naming the one resource it is about, and the same
// client serves what has to happen after boot anyway (Ctrl+Alt+Del,
// pause, snapshots). The order: logger, metrics, machine config, boot
// source, drives, network interface, vsock, InstanceStart, then GET / to
// see it running.
//
// Guests of this backend find their disks by position (vda, vdb, ... in
// Spec order: Firecracker cannot set serials) and their agent on vsock
// port AgentPort, which the host reaches through Spec.AgentSocket
// (hybrid vsock: "CONNECT <port>\n").
package firecracker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/banger/banger/internal/vmm"
)

// Name is the backend's name in records.
const Name = "firecracker"

// Guest-facing constants.
const (
	// AgentPort is the guest vsock port banger-agent listens on.
	AgentPort = 1024
	// GuestCID is the guest's vsock context id. With hybrid vsock the host
	// side is a unix socket per VM, so every VM may use the same CID.
	GuestCID = 3
	// IfaceID names the one network interface.
	IfaceID = "eth0"
	// MaxVCPU is Firecracker's limit (machine-config vcpu_count maximum).
	MaxVCPU = 32
)

// Files the backend keeps in the VM's RunDir.
const (
	APISocketName = "fc.sock"
	LogName       = "firecracker.log"
	MetricsName   = "firecracker.metrics"
)

// BootArgs are the kernel parameters the backend appends to Spec.Cmdline:
// reboot=k makes a guest reboot end Firecracker (through the i8042 reset
// line; a guest power-off on x86 only halts its vCPUs), pci=off skips a
// bus Firecracker does not have, and the i8042 ones skip probing for
// devices it does not emulate, as Firecracker's own default does.
const BootArgs = "reboot=k pci=off i8042.noaux i8042.nomux i8042.dumbkbd"

// maxCmdline is the kernel command line Firecracker accepts on x86_64
// (2048 with the NUL). Before 1.8 it appends a virtio_mmio.device=
// parameter per device, mmioParamLen bytes each, to what it is given.
const (
	maxCmdline   = 2047
	mmioParamLen = 40
)

// DefaultStartTimeout bounds how long Start waits for Firecracker's API
// socket to answer. It answers in milliseconds; the guest boot is not
// part of it.
const DefaultStartTimeout = 10 * time.Second

// Config configures the backend.
type Config struct {
	// Binary is the firecracker to run (an absolute path, from host.Look).
	Binary string
	Logger *slog.Logger
	// StartTimeout: DefaultStartTimeout when zero.
	StartTimeout time.Duration
	// Jailer, when set, launches Firecracker through its jailer (by the
	// root helper), chrooted and as the owner, instead of directly.
	Jailer *Jailer
}

// Backend starts and adopts Firecracker VMs.
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

var (
	_ vmm.Backend          = (*Backend)(nil)
	_ vmm.GuestConventions = (*Backend)(nil)
)

// Name is "firecracker".
func (b *Backend) Name() string { return Name }

// Guest says what Firecracker's guests are told: disks by order, agent on
// vsock.
func (b *Backend) Guest() vmm.Guest {
	return vmm.Guest{DisksByOrder: true, AgentVsockPort: AgentPort, ExitOnReboot: true}
}

// APISocket is the VM's API socket.
func APISocket(runDir string) string { return filepath.Join(runDir, APISocketName) }

// LogFile is Firecracker's own log (PUT /logger).
func LogFile(runDir string) string { return filepath.Join(runDir, LogName) }

// MetricsFile receives Firecracker's metrics (PUT /metrics).
func MetricsFile(runDir string) string { return filepath.Join(runDir, MetricsName) }

// Start runs Firecracker for spec, configures the VM through the API and
// boots it; it returns once Firecracker reports the VM running. Firecracker
// runs in its own session with the serial console (its stdout) and stderr
// appended to Spec.ConsoleLog, so neither a terminal's Ctrl-C nor the
// daemon's exit reaches it. ctx bounds only the start. Errors do not
// repeat the VM's name: the caller's "start vm NAME:" prefix says it.
func (b *Backend) Start(ctx context.Context, spec vmm.Spec) (*vmm.Machine, error) {
	plan, err := b.plan(spec)
	if err != nil {
		return nil, err
	}
	if err := vmm.InputsExist(spec); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(spec.RunDir, 0o700); err != nil {
		return nil, err
	}
	for _, p := range []string{plan.api, spec.AgentSocket} {
		if err := vmm.ClearSocket(ctx, p); err != nil {
			return nil, err
		}
	}
	console, err := os.OpenFile(spec.ConsoleLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	var m *vmm.Machine
	var version string
	if b.cfg.Jailer != nil {
		console.Close()
		m, version, err = b.startJailed(ctx, spec, plan)
	} else {
		m, version, err = b.startDirect(ctx, spec, plan, console)
	}
	if err != nil {
		if tail := vmm.ConsoleTail(spec.ConsoleLog, 3); tail != "" && !isAPIError(err) {
			err = fmt.Errorf("%w; console: %s", err, tail)
		}
		return nil, err
	}
	if err := b.boot(ctx, spec, plan); err != nil {
		err = abort(ctx, m, err)
		if tail := vmm.LogTail(plan.log, 3); tail != "" && !isAPIError(err) {
			err = fmt.Errorf("%w; %s: %s", err, plan.log, tail)
		}
		return nil, err
	}
	b.cfg.Logger.Info("firecracker running", "vm", spec.Name, "pid", m.PID(), "firecracker", version, "jailed", b.cfg.Jailer != nil)
	return m, nil
}

// isAPIError: Firecracker's fault message says all there is to say.
func isAPIError(err error) bool {
	var ae *APIError
	return errors.As(err, &ae)
}

// plan is what Start derives from a spec before touching anything.
type plan struct {
	api, log, metrics string
	drives            []Drive
	bootArgs          string
}

// plan checks what Firecracker itself would refuse, so that the user
// hears it from banger before a process is started.
func (b *Backend) plan(spec vmm.Spec) (plan, error) {
	if !filepath.IsAbs(b.cfg.Binary) {
		return plan{}, fmt.Errorf("firecracker binary %q is not an absolute path", b.cfg.Binary)
	}
	if err := spec.Validate(); err != nil {
		return plan{}, err
	}
	if spec.VCPU > MaxVCPU {
		return plan{}, fmt.Errorf("%d vCPUs: firecracker runs at most %d", spec.VCPU, MaxVCPU)
	}
	if spec.NIC != nil && spec.NIC.FD != nil {
		return plan{}, errors.New("firecracker opens its tap by name: an already-open tap cannot be passed")
	}
	p := plan{
		api:      APISocket(spec.RunDir),
		log:      LogFile(spec.RunDir),
		metrics:  MetricsFile(spec.RunDir),
		bootArgs: strings.TrimSpace(spec.Cmdline + " " + BootArgs),
	}
	devices := len(spec.Disks) + 1 // the vsock
	if spec.NIC != nil {
		devices++
	}
	if n := len(p.bootArgs) + devices*mmioParamLen; n > maxCmdline {
		return plan{}, fmt.Errorf("kernel command line is %d bytes with what firecracker adds, at most %d", n, maxCmdline)
	}
	ids := map[string]bool{}
	for i, d := range spec.Disks {
		id := DriveID(d.Serial, i)
		if ids[id] {
			return plan{}, fmt.Errorf("disk %d: drive id %q used twice", i, id)
		}
		ids[id] = true
		cache := CacheWriteback
		if d.ReadOnly {
			cache = "" // nothing to flush: Firecracker's default
		}
		p.drives = append(p.drives, Drive{DriveID: id, PathOnHost: d.Path, IsReadOnly: d.ReadOnly, CacheType: cache})
	}
	if b.cfg.Jailer != nil && filepath.Dir(spec.AgentSocket) != filepath.Clean(spec.RunDir) {
		return plan{}, fmt.Errorf("agent socket %s: under the jailer it must lie in the run dir %s", spec.AgentSocket, spec.RunDir)
	}
	return p, nil
}

var notID = regexp.MustCompile(`[^A-Za-z0-9_]`)

// DriveID turns a disk serial into a drive id, which Firecracker wants of
// letters, digits and underscores: "banger-image" is "banger_image".
func DriveID(serial string, i int) string {
	if serial == "" {
		return fmt.Sprintf("drive%d", i)
	}
	return notID.ReplaceAllString(serial, "_")
}

// startDirect runs firecracker as this process's child.
// It returns once the API answers, with Firecracker's version.
func (b *Backend) startDirect(ctx context.Context, spec vmm.Spec, p plan, console *os.File) (*vmm.Machine, string, error) {
	// Firecracker opens both files without O_APPEND or O_TRUNC (and before
	// 1.x without O_CREAT): they must exist, and start empty.
	for _, f := range []string{p.log, p.metrics} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			console.Close()
			return nil, "", err
		}
	}
	cmd := &exec.Cmd{
		Path:   b.cfg.Binary,
		Args:   []string{b.cfg.Binary, "--api-sock", p.api, "--id", spec.ID},
		Stdout: console,
		Stderr: console,
		// Its own session: no controlling terminal, no process group
		// shared with the daemon, no signal forwarded to it.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err := cmd.Start()
	console.Close()
	if err != nil {
		return nil, "", err
	}
	m, err := vmm.NewChild(vmm.ChildConfig{
		Backend:        Name,
		Cmd:            cmd,
		ControlSocket:  p.api,
		AgentSocket:    spec.AgentSocket,
		AgentVsockPort: AgentPort,
		Log:            p.log,
		Control:        control{NewClient(p.api)},
	})
	if err != nil {
		return nil, "", err
	}
	b.cfg.Logger.Debug("firecracker started", "vm", spec.Name, "pid", m.PID(), "argv", cmd.Args)
	version, err := b.awaitAPI(ctx, p.api, m.Alive)
	if err != nil {
		return nil, "", abort(ctx, m, err)
	}
	return m, version, nil
}

// abort kills a VMM that failed to start and returns err.
func abort(ctx context.Context, m *vmm.Machine, err error) error {
	m.Kill()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	m.Wait(wctx)
	return err
}

// boot configures the VM through the API and starts it.
func (b *Backend) boot(ctx context.Context, spec vmm.Spec, p plan) error {
	c := NewClient(p.api)
	steps := []func() error{
		func() error {
			return c.PutLogger(ctx, Logger{LogPath: p.log, Level: LevelInfo, ShowLevel: true})
		},
		func() error { return c.PutMetrics(ctx, Metrics{MetricsPath: p.metrics}) },
		func() error {
			return c.PutMachineConfig(ctx, MachineConfig{VCPUCount: spec.VCPU, MemSizeMiB: spec.MemoryMiB})
		},
		func() error {
			return c.PutBootSource(ctx, BootSource{KernelImagePath: spec.Kernel, InitrdPath: spec.Initrd, BootArgs: p.bootArgs})
		},
	}
	for _, d := range p.drives {
		steps = append(steps, func() error { return c.PutDrive(ctx, d) })
	}
	if n := spec.NIC; n != nil {
		steps = append(steps, func() error {
			return c.PutNetworkInterface(ctx, NetworkInterface{IfaceID: IfaceID, HostDevName: n.Tap, GuestMAC: n.MAC})
		})
	}
	steps = append(steps,
		func() error { return c.PutVsock(ctx, Vsock{GuestCID: GuestCID, UDSPath: spec.AgentSocket}) },
		func() error { return c.InstanceStart(ctx) },
	)
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	info, err := c.InstanceInfo(ctx)
	if err != nil {
		return err
	}
	if info.State != StateRunning {
		return fmt.Errorf("firecracker reports the VM %q after InstanceStart", info.State)
	}
	return nil
}

// awaitAPI polls the API socket until Firecracker answers GET /version,
// exits, or the start timeout passes.
func (b *Backend) awaitAPI(ctx context.Context, path string, alive func() bool) (string, error) {
	tctx, cancel := context.WithTimeout(ctx, b.cfg.StartTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	c := NewClient(path)
	var lastErr error
	for {
		if !alive() {
			return "", errors.New("firecracker exited during start (its output is in the console log)")
		}
		if _, err := os.Stat(path); err == nil {
			// The file appears at bind(), a moment before listen().
			v, err := c.Version(tctx)
			if err == nil {
				return v, nil
			}
			lastErr = err
		}
		select {
		case <-tctx.Done():
			switch {
			case ctx.Err() != nil:
				return "", fmt.Errorf("interrupted while firecracker started: %w", ctx.Err())
			case lastErr != nil:
				return "", fmt.Errorf("firecracker did not answer on its API socket within %v: %w", b.cfg.StartTimeout, lastErr)
			}
			return "", fmt.Errorf("firecracker did not open its API socket %s within %v", path, b.cfg.StartTimeout)
		case <-tick.C:
		}
	}
}

// Adopt finds a Firecracker that an earlier daemon started.
func (b *Backend) Adopt(rec vmm.Record) (*vmm.Machine, error) {
	if rec.Backend != Name {
		return nil, fmt.Errorf("adopt pid %d: record is for backend %q, not %q", rec.PID, rec.Backend, Name)
	}
	m, err := vmm.Adopt(rec, control{NewClient(rec.ControlSocket)})
	if rec.Jail != "" {
		if err != nil {
			if errors.Is(err, vmm.ErrGone) {
				b.removeJail(rec.Jail)
			}
			return nil, err
		}
		go b.removeJailAfter(m, rec.Jail)
	}
	return m, err
}

// control asks a Firecracker to shut its guest down. There is no power
// button: Ctrl+Alt+Del makes a Linux guest reboot, and a guest reboot
// ends Firecracker (reboot=k).
type control struct{ c *Client }

func (c control) Powerdown(ctx context.Context) error { return c.c.SendCtrlAltDel(ctx) }
