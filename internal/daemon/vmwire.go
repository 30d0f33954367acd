package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"syscall"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/config"
	"github.com/banger/banger/internal/filesync"
	"github.com/banger/banger/internal/host"
	"github.com/banger/banger/internal/portfwd"
	"github.com/banger/banger/internal/roothelper"
	"github.com/banger/banger/internal/sandbox"
	"github.com/banger/banger/internal/vmm"
	"github.com/banger/banger/internal/vmm/firecracker"
	"github.com/banger/banger/internal/vmm/qemu"
)

// chooseBackend decides the hypervisor once, at start: the KVM probe runs
// a test guest and takes up to two seconds.
func chooseBackend(ctx context.Context, cfg *config.Config, d *Daemon) (vmm.Backend, host.Choice, error) {
	kvm := host.ProbeKVM(ctx)
	fc := host.Look(ctx, "firecracker", cfg.FirecrackerBin)
	q := host.Look(ctx, "qemu-system-x86_64", cfg.QEMUBin)
	// Tests run a stand-in firecracker on hosts without KVM.
	kvm, testMode := host.WithoutKVMForTests(cfg.Hypervisor, kvm)
	choice, err := host.Choose(cfg.Hypervisor, kvm, fc, q)
	if err != nil {
		return nil, choice, err
	}
	switch choice.Backend {
	case "qemu":
		return qemu.New(qemu.Config{Binary: q.Path, Logger: d.log}), choice, nil
	case "firecracker":
		if testMode {
			choice.Reason += " (" + host.EnvFirecrackerWithoutKVM + "=1: tests only, KVM not checked)"
		}
		fcCfg := firecracker.Config{Binary: fc.Path, Logger: d.log}
		if cfg.JailerEnabled {
			j := host.Look(ctx, "jailer", cfg.JailerBin)
			switch {
			case j.Err != nil:
				return nil, choice, api.WithHint(api.Errorf(api.CodeUnavailable, "jailer_enabled is set but there is no usable jailer: %v", j.Err),
					"install the jailer of the same Firecracker release, set jailer_bin, or set jailer_enabled = false")
			case j.Version != fc.Version:
				return nil, choice, api.WithHint(api.Errorf(api.CodeUnavailable, "jailer %s at %s does not match firecracker %s at %s", j.Version, j.Path, fc.Version, fc.Path),
					"install the jailer and firecracker of one release")
			}
			fcCfg.Jailer = &firecracker.Jailer{Binary: j.Path, Jails: jails{roothelper.NewClient(d.layout.HelperSocket())}}
			choice.Reason += ", jailed (jailer " + j.Version + ")"
		}
		return firecracker.New(fcCfg), choice, nil
	default:
		return nil, choice, api.Errorf(api.CodeUnavailable, "unknown backend %q", choice.Backend)
	}
}

// jails adapts the root helper's jailer operations to the Firecracker
// backend.
type jails struct{ c *roothelper.Client }

func (j jails) LaunchJail(ctx context.Context, r firecracker.JailRequest) (firecracker.Jailed, error) {
	out, err := j.c.LaunchJailer(ctx, roothelper.JailerLaunchRequest{
		ID: r.ID, Jailer: r.Jailer, Firecracker: r.Firecracker,
		Files: r.Files, Dirs: r.Dirs, APISocket: r.APISocket, ConsoleLog: r.ConsoleLog,
	})
	return firecracker.Jailed{PID: out.PID, StartTime: out.StartTime, Root: out.Root}, err
}

func (j jails) CleanupJail(ctx context.Context, id string) error { return j.c.CleanupJail(ctx, id) }

// unavailableBackend answers every start with why no hypervisor can run.
type unavailableBackend struct{ err error }

func (u unavailableBackend) Name() string { return "none" }
func (u unavailableBackend) Start(context.Context, vmm.Spec) (*vmm.Machine, error) {
	return nil, u.err
}
func (u unavailableBackend) Adopt(vmm.Record) (*vmm.Machine, error) {
	return nil, fmt.Errorf("%w: %v", vmm.ErrGone, u.err)
}

// hostNet adapts the root helper's client to what a VM needs.
type hostNet struct {
	c      *roothelper.Client
	bridge string
	// bridgeUp runs once, after the bridge first exists in this daemon's
	// life (host DNS routing needs the link).
	bridgeUp func(ctx context.Context)
	once     sync.Once
}

func (h *hostNet) EnsureBridge(ctx context.Context) error {
	if _, err := h.c.EnsureBridge(ctx, h.bridge); err != nil {
		return err
	}
	if h.bridgeUp != nil {
		h.once.Do(func() { h.bridgeUp(ctx) })
	}
	return nil
}

func (h *hostNet) CreateTap(ctx context.Context, name string) error {
	_, err := h.c.CreateTap(ctx, name)
	return err
}

func (h *hostNet) DeleteTap(ctx context.Context, name string) error { return h.c.DeleteTap(ctx, name) }

func (h *hostNet) AddNAT(ctx context.Context, tap string, ip netip.Addr) error {
	_, err := h.c.AddNAT(ctx, tap, ip)
	return err
}

func (h *hostNet) RemoveNAT(ctx context.Context, tap string, ip netip.Addr) error {
	return h.c.RemoveNAT(ctx, tap, ip)
}

// vmImages adapts the image store to the sandbox.
type vmImages struct{ d *Daemon }

func (v vmImages) Resolve(ctx context.Context, name string, progress func(api.Event)) (sandbox.Image, error) {
	_, images, err := v.d.artefacts()
	if err != nil {
		return sandbox.Image{}, err
	}
	img, err := images.Ensure(ctx, name, progress)
	if err != nil {
		return sandbox.Image{}, err
	}
	return sandbox.Image{Name: img.Name, RootFS: img.RootFS, WorkSeed: img.WorkSeed, Kernel: img.Kernel}, nil
}

// vmKernels adapts the kernel store to the sandbox.
type vmKernels struct{ d *Daemon }

func (v vmKernels) BootFiles(ctx context.Context, name, backend string) (string, string, error) {
	kernels, _, err := v.d.artefacts()
	if err != nil {
		return "", "", err
	}
	k, err := kernels.Get(ctx, name)
	if err != nil {
		return "", "", err
	}
	if backend == firecracker.Name {
		if p := host.FirecrackerKernelProblem(v.d.choice.Version, k.MMIOCmdlineDevices); p != "" {
			return "", "", api.WithHint(api.Errorf(api.CodeUnavailable, "kernel %q cannot boot under firecracker: %s", name, p),
				"install Firecracker >= "+host.FirecrackerACPI+", use a kernel built with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y (banger kernel import), or set hypervisor = \"qemu\"")
		}
	}
	initrd, err := kernels.Initramfs(ctx, k, v.d.layout.AgentBinary())
	if err != nil {
		return "", "", fmt.Errorf("build initramfs for kernel %q: %w", name, err)
	}
	// Firecracker (up to 1.16.1 on x86_64) loads only an ELF vmlinux.
	path := k.VmlinuzPath()
	if backend == firecracker.Name || path == "" {
		path = k.VmlinuxPath()
	}
	return path, initrd, nil
}

// forwards adapts the port-forward manager to the sandbox.
type forwards struct{ m *portfwd.Manager }

func (f forwards) Open(ctx context.Context, vm string, target func() (netip.Addr, bool), specs []string) error {
	parsed := make([]portfwd.Spec, 0, len(specs))
	for _, s := range specs {
		p, err := portfwd.ParseSpec(s)
		if err != nil {
			return api.Errorf(api.CodeBadRequest, "%v", err)
		}
		parsed = append(parsed, p)
	}
	_, err := f.m.Open(ctx, vm, target, parsed)
	if errors.Is(err, syscall.EADDRINUSE) {
		return api.WithHint(api.Errorf(api.CodeConflict, "%v", err), "pick another host port with -p")
	}
	return err
}

func (f forwards) Close(vm string) { f.m.Close(vm) }

// fileSync adapts the [[file_sync]] config to the sandbox.
type fileSync struct {
	home    string
	entries []config.FileSync
}

func (f fileSync) Check() error {
	return filesync.Check(filesync.Options{Home: f.home, Entries: f.entries})
}

func (f fileSync) Build(ctx context.Context, w io.Writer, warn func(string)) error {
	_, err := filesync.Build(ctx, filesync.Options{Home: f.home, Entries: f.entries, Warn: warn}, w)
	return err
}
