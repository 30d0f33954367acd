package daemon

import (
	"context"
	"fmt"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/config"
	"github.com/banger/banger/internal/host"
	"github.com/banger/banger/internal/roothelper"
	"github.com/banger/banger/internal/sandbox"
	"github.com/banger/banger/internal/vmm"
	"github.com/banger/banger/internal/vmm/qemu"
)

// chooseBackend decides the hypervisor once, at start: the KVM probe runs
// a test guest and takes up to two seconds.
func chooseBackend(ctx context.Context, cfg *config.Config, d *Daemon) (vmm.Backend, host.Choice, error) {
	kvm := host.ProbeKVM(ctx)
	fc := host.Look(ctx, "firecracker", cfg.FirecrackerBin)
	q := host.Look(ctx, "qemu-system-x86_64", cfg.QEMUBin)
	choice, err := host.Choose(cfg.Hypervisor, kvm, fc, q)
	if err != nil {
		return nil, choice, err
	}
	switch choice.Backend {
	case "qemu":
		return qemu.New(qemu.Config{Binary: q.Path, Logger: d.log}), choice, nil
	default:
		return nil, choice, api.WithHint(api.Errorf(api.CodeUnavailable, "the %s backend is not available in this build", choice.Backend),
			`set hypervisor = "qemu" in the config`)
	}
}

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
}

func (h hostNet) EnsureBridge(ctx context.Context) error {
	_, err := h.c.EnsureBridge(ctx, h.bridge)
	return err
}

func (h hostNet) CreateTap(ctx context.Context, name string) error {
	_, err := h.c.CreateTap(ctx, name)
	return err
}

func (h hostNet) DeleteTap(ctx context.Context, name string) error { return h.c.DeleteTap(ctx, name) }

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
	initrd, err := kernels.Initramfs(ctx, k, v.d.layout.AgentBinary())
	if err != nil {
		return "", "", fmt.Errorf("build initramfs for kernel %q: %w", name, err)
	}
	path := k.VmlinuzPath()
	if backend == "firecracker" || path == "" {
		path = k.VmlinuxPath()
	}
	return path, initrd, nil
}
