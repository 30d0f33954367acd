// Package sandbox is the lifecycle of VMs as verbs: create, start, stop,
// restart, kill, delete. Every verb that fails undoes what it did. The
// records live in the state store; whether a VM runs is derived from its
// VMM process, never trusted from the record.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/config"
	"github.com/banger/banger/internal/guest/agent"
	"github.com/banger/banger/internal/namelock"
	"github.com/banger/banger/internal/paths"
	"github.com/banger/banger/internal/state"
	"github.com/banger/banger/internal/vmm"
)

// Image is what a VM needs of its image.
type Image struct {
	Name     string
	RootFS   string // shared, read-only
	WorkSeed string // small ext4 of the image's /root
	Kernel   string // kernel name
}

// Images resolves (and on first use builds) images.
type Images interface {
	Resolve(ctx context.Context, name string, progress func(api.Event)) (Image, error)
}

// Kernels gives the files a backend boots.
type Kernels interface {
	// BootFiles returns the kernel to boot with the backend (bzImage for
	// QEMU, vmlinux for Firecracker) and banger's initramfs for it.
	BootFiles(ctx context.Context, name, backend string) (kernel, initrd string, err error)
}

// HostNet is the part of the root helper a VM needs.
type HostNet interface {
	EnsureBridge(ctx context.Context) error
	CreateTap(ctx context.Context, name string) error
	DeleteTap(ctx context.Context, name string) error
	AddNAT(ctx context.Context, tap string, ip netip.Addr) error
	RemoveNAT(ctx context.Context, tap string, ip netip.Addr) error
}

// Config wires a Manager.
type Config struct {
	Layout  paths.Layout
	Config  *config.Config
	Store   *state.Store
	Images  Images
	Kernels Kernels
	Net     HostNet
	Backend vmm.Backend
	// Accel is the backend's accelerator ("kvm" or "tcg").
	Accel string
	// HypervisorReason says why this backend was chosen (vm show).
	HypervisorReason string
	Log              *slog.Logger
	// StopTimeout bounds a graceful stop before the VMM is killed.
	StopTimeout time.Duration
	// Guest sets up a booted guest for ssh (authorized key, host key);
	// nil skips it.
	Guest GuestSetup
	// Forwards runs host-to-guest port forwards; nil disables -p.
	Forwards PortForwards
	// FileSync copies the [[file_sync]] entries into new VMs; nil skips it.
	FileSync FileSync
}

// record is a VM as stored.
type record struct {
	Name       string      `json:"name"`
	ID         string      `json:"id"`
	Image      string      `json:"image"`
	Kernel     string      `json:"kernel"`
	VCPU       int         `json:"vcpu"`
	MemoryMiB  int         `json:"memory_mib"`
	DiskBytes  int64       `json:"disk_bytes"`
	IP         netip.Addr  `json:"ip"`
	MAC        string      `json:"mac"`
	Tap        string      `json:"tap"`
	CreatedAt  time.Time   `json:"created_at"`
	Started    bool        `json:"started,omitempty"` // ever started
	StartedAt  *time.Time  `json:"started_at,omitempty"`
	Machine    *vmm.Record `json:"machine,omitempty"` // the VMM of the current run
	Hypervisor string      `json:"hypervisor,omitempty"`
	LastError  string      `json:"last_error,omitempty"`
	// NAT lets the guest reach out through the host (opt-in).
	NAT bool `json:"nat,omitempty"`
	// Forwards are host-to-guest port forwards ("127.0.0.1:8080:80"),
	// opened while the VM runs.
	Forwards []string `json:"forwards,omitempty"`
	// Synced is set once the [[file_sync]] entries were copied in (on the
	// first boot).
	Synced bool `json:"synced,omitempty"`
}

// run is a VM whose VMM is up.
type run struct {
	m        *vmm.Machine
	agent    *agent.Client
	stopping bool
	exited   chan struct{} // closed once the VMM exited and was cleaned up
}

// Manager runs the VM lifecycle. It is safe for concurrent use: verbs on
// one VM are serialised by a per-VM lock; creation reserves names and
// addresses under createMu.
type Manager struct {
	cfg Config

	createMu sync.Mutex

	locks namelock.Set
	mu    sync.Mutex
	runs  map[string]*run
}

// New returns a Manager; call Reconcile before serving.
func New(cfg Config) *Manager {
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	return &Manager{cfg: cfg, runs: map[string]*run{}}
}

// lock takes the per-VM lock, or gives up when ctx ends.
func (m *Manager) lock(ctx context.Context, name string) (func(), error) {
	unlock, err := m.locks.Lock(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("vm %q is busy with another operation: %w", name, err)
	}
	return unlock, nil
}

func (m *Manager) runOf(name string) *run {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.runs[name]
}

func (m *Manager) load(name string) (record, error) {
	var r record
	if err := ValidateName(name); err != nil {
		return r, err
	}
	if err := m.cfg.Store.Get(state.KindVM, name, &r); err != nil {
		if errors.Is(err, api.ErrNotFound) {
			return r, api.WithHint(api.Errorf(api.CodeNotFound, "no VM named %q", name), "list VMs with: banger vm list")
		}
		return r, err
	}
	return r, nil
}

func (m *Manager) save(r record) error { return m.cfg.Store.Put(state.KindVM, r.Name, r) }

func (m *Manager) vmDir(r record) string  { return m.cfg.Layout.VMDir(r.Name) }
func (m *Manager) runDir(r record) string { return filepath.Join(m.cfg.Layout.RuntimeDir, "vms", r.ID) }

// view turns a record into what the CLI sees, deriving the state.
func (m *Manager) view(r record) api.VM {
	v := api.VM{
		Name: r.Name, ID: r.ID, Image: r.Image, Kernel: r.Kernel, VCPU: r.VCPU, MemoryMiB: r.MemoryMiB,
		DiskBytes: r.DiskBytes, IP: r.IP, MAC: r.MAC, Tap: r.Tap, Hypervisor: r.Hypervisor,
		CreatedAt: r.CreatedAt, LastError: r.LastError, Dir: m.vmDir(r), ConsoleLog: filepath.Join(m.vmDir(r), consoleLog),
		NAT: r.NAT, Forwards: r.Forwards, HypervisorReason: m.cfg.HypervisorReason,
	}
	rn := m.runOf(r.Name)
	switch {
	case rn != nil && rn.m.Alive():
		v.State, v.PID, v.StartedAt = api.StateRunning, rn.m.PID(), r.StartedAt
	case r.LastError != "":
		v.State = api.StateError
	case r.Started:
		v.State = api.StateStopped
	default:
		v.State = api.StateCreated
	}
	return v
}

// List returns every VM.
func (m *Manager) List(ctx context.Context) ([]api.VM, error) {
	recs, err := state.All[record](m.cfg.Store, state.KindVM)
	if err != nil {
		return nil, err
	}
	out := make([]api.VM, 0, len(recs))
	for _, r := range recs {
		out = append(out, m.view(r))
	}
	return out, nil
}

// Get returns one VM.
func (m *Manager) Get(ctx context.Context, name string) (api.VM, error) {
	r, err := m.load(name)
	if err != nil {
		return api.VM{}, err
	}
	return m.view(r), nil
}

// Names lists VM names (for completion).
func (m *Manager) Names() ([]string, error) { return m.cfg.Store.List(state.KindVM) }

// UsingImage and UsingKernel report the VMs that depend on an artefact, so
// the stores can refuse to delete it.
func (m *Manager) UsingImage(name string) []string {
	return m.using(func(r record) bool { return r.Image == name })
}

func (m *Manager) UsingKernel(name string) []string {
	return m.using(func(r record) bool { return r.Kernel == name })
}

func (m *Manager) using(match func(record) bool) []string {
	recs, _ := state.All[record](m.cfg.Store, state.KindVM)
	var names []string
	for _, r := range recs {
		if match(r) {
			names = append(names, r.Name)
		}
	}
	return names
}

// dialAgent connects to a VM's agent channel: Firecracker's hybrid vsock
// (a unix socket on which "CONNECT <port>" reaches the guest port, one
// connection per stream), or QEMU's virtio-serial port served on a unix
// socket.
func dialAgent(rec vmm.Record) *agent.Client {
	if rec.AgentVsockPort != 0 {
		return agent.NewClient(agent.ClientConfig{
			Dial: func(ctx context.Context) (net.Conn, error) {
				return agent.DialFirecrackerVsock(ctx, rec.AgentSocket, rec.AgentVsockPort)
			},
		})
	}
	return agent.NewClient(agent.ClientConfig{
		Serial: true,
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", rec.AgentSocket)
		},
	})
}

// AgentConn opens a raw connection to a running VM's agent; the daemon
// splices it to the CLI.
func (m *Manager) AgentConn(ctx context.Context, name string) (net.Conn, error) {
	if _, err := m.load(name); err != nil {
		return nil, err
	}
	rn := m.runOf(name)
	if rn == nil || !rn.m.Alive() {
		return nil, api.WithHint(api.Errorf(api.CodeConflict, "vm %q is not running", name), "start it: banger vm start "+name)
	}
	return rn.agent.Dial(ctx)
}

// removeAll removes paths, collecting errors.
func removeAll(paths ...string) error {
	var errs []error
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Lookup returns the address of a running VM, for the .vm DNS zone: the
// answer follows the VMM's life, so records appear on start, vanish on
// stop and delete, and are right again after a daemon restart.
func (m *Manager) Lookup(name string) (netip.Addr, bool) {
	if m.runOf(name) == nil {
		return netip.Addr{}, false
	}
	var r record
	if err := m.cfg.Store.Get(state.KindVM, name, &r); err != nil {
		return netip.Addr{}, false
	}
	return r.IP, true
}

// SSHInfo is what the system ssh client needs to reach a VM.
func (m *Manager) SSHInfo(name string) (api.SSHInfo, error) {
	r, err := m.load(name)
	if err != nil {
		return api.SSHInfo{}, err
	}
	rn := m.runOf(name)
	return api.SSHInfo{Name: r.Name, IP: r.IP.String(), User: "root", Running: rn != nil && rn.m.Alive()}, nil
}

// withVM runs fn on the VM's record while holding its lock: the shape of
// every verb that changes one VM.
func (m *Manager) withVM(ctx context.Context, name string, fn func(r record) (api.VM, error)) (api.VM, error) {
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return api.VM{}, err
	}
	defer unlock()
	r, err := m.load(name)
	if err != nil {
		return api.VM{}, err
	}
	return fn(r)
}
