package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/config"
	"github.com/banger/banger/internal/guest/boot"
	"github.com/banger/banger/internal/portfwd"
	"github.com/banger/banger/internal/state"
	"github.com/banger/banger/internal/vmm"
)

// Progress reports a step of a long operation.
type Progress func(api.Event)

func (p Progress) stage(stage, msg string) {
	if p != nil {
		p(api.Event{Type: api.EventProgress, Stage: stage, Message: msg})
	}
}

// resolveSpec validates a create request and fills defaults from config.
func (m *Manager) resolveSpec(req api.CreateVM) (api.CreateVM, error) {
	d := m.cfg.Config.VMDefaults
	if req.Image == "" {
		req.Image = m.cfg.Config.DefaultImage
	}
	if req.VCPU == nil {
		req.VCPU = &d.VCPU.Value
	}
	if req.MemoryMiB == nil {
		req.MemoryMiB = &d.MemoryMiB.Value
	}
	if req.DiskBytes == nil {
		req.DiskBytes = &d.DiskBytes.Value
	}
	var errs []error
	if req.Name != "" {
		if err := ValidateName(req.Name); err != nil {
			return req, err
		}
	}
	if err := config.ValidDNSLabel(req.Image); err != nil {
		errs = append(errs, fmt.Errorf("image: %w", err))
	}
	if v := *req.VCPU; v < config.MinVCPU || v > config.MaxVCPU {
		errs = append(errs, fmt.Errorf("--vcpu %d: must be between %d and %d", v, config.MinVCPU, config.MaxVCPU))
	}
	if v := *req.MemoryMiB; v < config.MinMemoryMiB || v > config.MaxMemoryMiB {
		errs = append(errs, fmt.Errorf("--memory %d MiB: must be between %d and %d", v, config.MinMemoryMiB, config.MaxMemoryMiB))
	}
	if v := *req.DiskBytes; v < config.MinDiskBytes || v > config.MaxDiskBytes {
		errs = append(errs, fmt.Errorf("--disk-size %s: must be between %s and %s", config.FormatSize(v), config.FormatSize(config.MinDiskBytes), config.FormatSize(config.MaxDiskBytes)))
	}
	for i, f := range req.Forwards {
		spec, err := portfwd.ParseSpec(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		req.Forwards[i] = spec.String()
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return req, api.Errorf(api.CodeBadRequest, "invalid VM spec: %s", strings.Join(msgs, "; "))
	}
	return req, nil
}

// Create makes a VM: its record, address, and disks. Nothing of the image
// is copied: the VM gets a sparse writable layer over the shared read-only
// image and its own work disk seeded from the image's /root. Unless NoStart,
// it then boots it. A failure leaves nothing behind.
func (m *Manager) Create(ctx context.Context, req api.CreateVM, progress Progress) (api.VM, error) {
	req, err := m.resolveSpec(req)
	if err != nil {
		return api.VM{}, err
	}
	if req.Name != "" {
		if _, err := m.load(req.Name); err == nil {
			return api.VM{}, api.WithHint(api.Errorf(api.CodeAlreadyExists, "a VM named %q already exists", req.Name), "pick another --name, or delete it: banger vm delete "+req.Name)
		}
	}
	if m.cfg.FileSync != nil {
		if err := m.cfg.FileSync.Check(); err != nil {
			return api.VM{}, api.WithHint(api.Errorf(api.CodeBadRequest, "%v", err), "fix or remove that [[file_sync]] entry in your config")
		}
	}
	img, err := m.cfg.Images.Resolve(ctx, req.Image, progress)
	if err != nil {
		return api.VM{}, err
	}
	r, err := m.reserve(req, img)
	if err != nil {
		return api.VM{}, err
	}
	unlock, err := m.lock(ctx, r.Name)
	if err != nil {
		m.cfg.Store.Delete(state.KindVM, r.Name)
		return api.VM{}, err
	}
	defer unlock()
	if progress != nil {
		progress(api.Event{Type: api.EventProgress, Stage: "disks", Message: "creating disks for " + r.Name, VM: r.Name})
	}
	if err := m.makeDisks(ctx, r, img); err != nil {
		err = errors.Join(fmt.Errorf("create vm %q: %w", r.Name, err), removeAll(m.vmDir(r)), m.cfg.Store.Delete(state.KindVM, r.Name))
		return api.VM{}, err
	}
	if req.NoStart {
		return m.view(r), nil
	}
	return m.start(ctx, r, progress)
}

// reserve picks the name, id, address and MAC under createMu and writes the
// record, so concurrent creates never collide.
func (m *Manager) reserve(req api.CreateVM, img Image) (record, error) {
	m.createMu.Lock()
	defer m.createMu.Unlock()
	recs, err := state.All[record](m.cfg.Store, state.KindVM)
	if err != nil {
		return record{}, err
	}
	usedIP := map[netip.Addr]bool{}
	usedName := map[string]bool{}
	usedMAC := map[string]bool{}
	for _, r := range recs {
		usedIP[r.IP], usedName[r.Name], usedMAC[r.MAC] = true, true, true
	}
	name := req.Name
	if name == "" {
		name = generateName(func(s string) bool { return usedName[s] })
	}
	ip, err := nextAddress(m.cfg.Config.Network.CIDR, usedIP)
	if err != nil {
		return record{}, err
	}
	id := newID()
	for usedMAC[macFor(id)] {
		id = newID()
	}
	r := record{
		Name: name, ID: id, Image: img.Name, Kernel: img.Kernel,
		VCPU: *req.VCPU, MemoryMiB: *req.MemoryMiB, DiskBytes: *req.DiskBytes,
		IP: ip, MAC: macFor(id), Tap: tapFor(id), CreatedAt: time.Now().UTC().Truncate(time.Second),
		NAT: req.NAT, Forwards: req.Forwards,
	}
	if err := m.cfg.Store.Create(state.KindVM, name, r); err != nil {
		if errors.Is(err, api.ErrAlreadyExists) {
			return record{}, api.WithHint(api.Errorf(api.CodeAlreadyExists, "a VM named %q already exists", name), "pick another --name")
		}
		return record{}, err
	}
	return r, nil
}

func (m *Manager) makeDisks(ctx context.Context, r record, img Image) error {
	dir := m.vmDir(r)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := makeLayer(ctx, filepath.Join(dir, layerDisk), r.DiskBytes); err != nil {
		return fmt.Errorf("make writable layer: %w", err)
	}
	if err := makeWorkDisk(ctx, img.WorkSeed, filepath.Join(dir, workDisk), r.DiskBytes); err != nil {
		return fmt.Errorf("make work disk: %w", err)
	}
	return nil
}

// Start boots a created or stopped VM and waits until its agent answers.
func (m *Manager) Start(ctx context.Context, name string, progress Progress) (api.VM, error) {
	return m.withVM(ctx, name, func(r record) (api.VM, error) {
		if rn := m.runOf(name); rn != nil && rn.m.Alive() {
			return m.view(r), nil // already running: start is idempotent
		}
		return m.start(ctx, r, progress)
	})
}

// start boots r; the caller holds its lock.
func (m *Manager) start(ctx context.Context, r record, progress Progress) (api.VM, error) {
	v, err := m.boot(ctx, r, progress)
	if err != nil {
		r, _ = m.load(r.Name)
		r.LastError = err.Error()
		if serr := m.save(r); serr != nil {
			err = errors.Join(err, serr)
		}
		return api.VM{}, err
	}
	return v, nil
}

func (m *Manager) boot(ctx context.Context, r record, progress Progress) (api.VM, error) {
	firstBoot := !r.Started
	img, err := m.cfg.Images.Resolve(ctx, r.Image, progress)
	if err != nil {
		return api.VM{}, err
	}
	progress.stage("kernel", "preparing kernel and initramfs")
	kernelPath, initrd, err := m.cfg.Kernels.BootFiles(ctx, r.Kernel, m.cfg.Backend.Name())
	if err != nil {
		return api.VM{}, err
	}
	progress.stage("network", "attaching "+r.Tap+" to "+m.cfg.Config.Network.Bridge)
	if err := m.cfg.Net.EnsureBridge(ctx); err != nil {
		return api.VM{}, fmt.Errorf("start vm %q: %w", r.Name, err)
	}
	if err := m.cfg.Net.CreateTap(ctx, r.Tap); err != nil {
		return api.VM{}, fmt.Errorf("start vm %q: %w", r.Name, err)
	}
	undo := func(err error) error {
		return errors.Join(err, m.cfg.Net.DeleteTap(context.WithoutCancel(ctx), r.Tap), removeAll(m.runDir(r)))
	}
	rundir := m.runDir(r)
	removeAll(rundir)
	if err := os.MkdirAll(rundir, 0o700); err != nil {
		return api.VM{}, undo(err)
	}
	spec, err := m.spec(r, img, kernelPath, initrd)
	if err != nil {
		return api.VM{}, undo(err)
	}
	progress.stage("boot", fmt.Sprintf("booting %s (%s, %s)", r.Name, m.cfg.Backend.Name(), m.cfg.Accel))
	mach, err := m.cfg.Backend.Start(ctx, spec)
	if err != nil {
		return api.VM{}, undo(api.WithHint(fmt.Errorf("start vm %q: %w", r.Name, err), "see the console: banger vm logs "+r.Name))
	}
	// Persist the VMM before anything else, so a daemon that dies now
	// finds (and adopts or cleans) it on restart.
	rec := mach.Record()
	now := time.Now().UTC().Truncate(time.Second)
	r.Machine, r.Started, r.StartedAt, r.LastError = &rec, true, &now, ""
	r.Hypervisor = m.cfg.Backend.Name() + " (" + m.cfg.Accel + ")"
	if err := m.save(r); err != nil {
		mach.Kill()
		mach.Wait(context.WithoutCancel(ctx))
		return api.VM{}, undo(err)
	}
	rn := &run{m: mach, agent: dialAgent(rec), exited: make(chan struct{})}
	m.mu.Lock()
	m.runs[r.Name] = rn
	m.mu.Unlock()
	go m.watch(r.Name, rn)

	progress.stage("agent", "waiting for the guest to come up")
	timeout := m.cfg.Config.BootTimeout
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := rn.agent.WaitReady(wctx, 250*time.Millisecond); err != nil {
		rn.stopping = true
		mach.Kill()
		<-rn.exited
		tail := vmm.ConsoleTail(spec.ConsoleLog, 15)
		why := fmt.Sprintf("did not come up within %s", timeout)
		if ctx.Err() != nil {
			why = "start was cancelled"
		} else if !errors.Is(err, context.DeadlineExceeded) {
			why = "boot failed: " + err.Error()
		}
		return api.VM{}, api.WithHint(fmt.Errorf("vm %q %s; console tail: %s", r.Name, why, tail),
			"full console: banger vm logs "+r.Name+"; raise boot_timeout in the config on slow hosts")
	}
	progress.stage("guest", "installing the ssh key and host side")
	err = m.prepareGuest(wctx, &r, rn.agent, firstBoot, progress)
	if err == nil {
		err = m.hostSide(ctx, r)
	}
	if err == nil {
		err = m.save(r)
	}
	if err != nil {
		rn.stopping = true
		mach.Kill()
		<-rn.exited
		return api.VM{}, err
	}
	return m.view(r), nil
}

// spec builds the VMM spec of a run.
func (m *Manager) spec(r record, img Image, kernelPath, initrd string) (vmm.Spec, error) {
	n := m.cfg.Config.Network
	mac, err := net.ParseMAC(r.MAC)
	if err != nil {
		return vmm.Spec{}, err
	}
	// The guest finds its disks by serial, or by position (vda, vdb, vdc in
	// the order of Disks below) where the VMM cannot set serials, and its
	// agent channel where the backend puts it.
	g := vmm.GuestOf(m.cfg.Backend)
	disk := func(serial, name string) boot.Disk {
		if g.DisksByOrder {
			return boot.Disk{Name: name}
		}
		return boot.Disk{Serial: serial}
	}
	agentKind := boot.AgentVirtioSerial
	if g.AgentVsockPort != 0 {
		agentKind = boot.AgentVsock(g.AgentVsockPort)
	}
	params := boot.Params{
		Image:    disk(serialImage, "vda"),
		Layer:    disk(serialLayer, "vdb"),
		Work:     disk(serialWork, "vdc"),
		Address:  netip.PrefixFrom(r.IP, n.CIDR.Bits()),
		Gateway:  n.CIDR.Addr(),
		MAC:      mac,
		DNS:      m.guestDNS(),
		Hostname: r.Name,
		Agent:    agentKind,
	}
	if err := params.Validate(); err != nil {
		return vmm.Spec{}, err
	}
	dir, rundir := m.vmDir(r), m.runDir(r)
	return vmm.Spec{
		Name: r.Name, ID: r.ID, VCPU: r.VCPU, MemoryMiB: r.MemoryMiB,
		Kernel: kernelPath, Initrd: initrd,
		Cmdline: "console=ttyS0 panic=-1 " + params.Cmdline(),
		Disks: []vmm.Disk{
			{Path: img.RootFS, ReadOnly: true, Serial: serialImage},
			{Path: filepath.Join(dir, layerDisk), Serial: serialLayer},
			{Path: filepath.Join(dir, workDisk), Serial: serialWork},
		},
		NIC:         &vmm.NIC{Tap: r.Tap, MAC: r.MAC},
		AgentSocket: filepath.Join(rundir, "agent.sock"),
		ConsoleLog:  filepath.Join(dir, consoleLog),
		RunDir:      rundir,
		Accel:       m.cfg.Accel,
	}, nil
}

// guestDNS is what guests use as name server: the bridge address, where
// the root helper redirects port 53 to bangerd's DNS server, which answers
// .vm names and forwards the rest.
func (m *Manager) guestDNS() []netip.Addr {
	return []netip.Addr{m.cfg.Config.Network.CIDR.Addr()}
}

// watch waits for a VMM to exit and cleans up after it, whoever stopped it.
func (m *Manager) watch(name string, rn *run) {
	rn.m.Wait(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rn.agent.Close()
	r, err := m.load(name)
	if err == nil {
		if cerr := m.cleanupRun(ctx, r); cerr != nil {
			m.cfg.Log.Warn("cleanup after vm exit", "vm", name, "err", cerr)
		}
		r.Machine = nil
		if err := m.save(r); err != nil {
			m.cfg.Log.Warn("save vm", "vm", name, "err", err)
		}
	}
	if !rn.stopping {
		m.cfg.Log.Info("vm exited", "vm", name)
	}
	m.mu.Lock()
	if m.runs[name] == rn {
		delete(m.runs, name)
	}
	m.mu.Unlock()
	close(rn.exited)
}

// cleanupRun removes what a run had on the host: the tap and the runtime
// directory. It never stops at the first error.
func (m *Manager) cleanupRun(ctx context.Context, r record) error {
	if m.cfg.Forwards != nil {
		m.cfg.Forwards.Close(r.Name)
	}
	var errs []error
	if r.NAT {
		errs = append(errs, m.cfg.Net.RemoveNAT(ctx, r.Tap, r.IP))
	}
	return errors.Join(append(errs, m.cfg.Net.DeleteTap(ctx, r.Tap), removeAll(m.runDir(r)))...)
}

// Stop asks the guest to sync and power off, and kills the VMM after
// StopTimeout. Stopping a stopped VM is not an error.
func (m *Manager) Stop(ctx context.Context, name string) (api.VM, error) {
	return m.withVM(ctx, name, func(r record) (api.VM, error) {
		if err := m.stop(ctx, name); err != nil {
			return api.VM{}, err
		}
		r, _ = m.load(name)
		return m.view(r), nil
	})
}

func (m *Manager) stop(ctx context.Context, name string) error {
	rn := m.runOf(name)
	if rn == nil {
		return nil
	}
	rn.stopping = true
	sctx, cancel := context.WithTimeout(ctx, m.cfg.StopTimeout)
	defer cancel()
	// The agent syncs the guest's disks and powers off (QEMU exits) or,
	// where only a reboot ends the VMM, reboots (Firecracker exits). Without
	// an agent, ask the VMM to power the guest down.
	if err := rn.agent.Shutdown(sctx, vmm.GuestOf(m.cfg.Backend).ExitOnReboot); err != nil {
		m.cfg.Log.Info("agent shutdown failed, asking the VMM", "vm", name, "err", err)
		rn.m.Shutdown(sctx)
	}
	select {
	case <-rn.exited:
		return nil
	case <-sctx.Done():
	}
	m.cfg.Log.Warn("vm did not power off in time, killing it", "vm", name, "timeout", m.cfg.StopTimeout)
	return m.kill(name, rn)
}

func (m *Manager) kill(name string, rn *run) error {
	rn.stopping = true
	if err := rn.m.Kill(); err != nil {
		return fmt.Errorf("kill vm %q: %w", name, err)
	}
	select {
	case <-rn.exited:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("kill vm %q: the VMM (pid %d) did not exit", name, rn.m.PID())
	}
}

// Restart stops then starts a VM.
func (m *Manager) Restart(ctx context.Context, name string, progress Progress) (api.VM, error) {
	return m.withVM(ctx, name, func(r record) (api.VM, error) {
		if err := m.stop(ctx, name); err != nil {
			return api.VM{}, err
		}
		r, _ = m.load(name)
		return m.start(ctx, r, progress)
	})
}

// Kill stops a VM at once, without asking the guest: unsynced writes in the
// guest are lost.
func (m *Manager) Kill(ctx context.Context, name string) (api.VM, error) {
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return api.VM{}, err
	}
	defer unlock()
	if _, err := m.load(name); err != nil {
		return api.VM{}, err
	}
	if rn := m.runOf(name); rn != nil {
		if err := m.kill(name, rn); err != nil {
			return api.VM{}, err
		}
	}
	r, _ := m.load(name)
	return m.view(r), nil
}

// Delete stops a VM if it runs (killing it: its disks are about to go) and
// removes its disks, runtime files, tap and record.
func (m *Manager) Delete(ctx context.Context, name string) error {
	_, err := m.delete(ctx, name, false)
	return err
}

// delete removes a VM; with onlyStopped it leaves a running one alone and
// reports false, deciding under the VM's lock so a concurrent start cannot
// slip in between.
func (m *Manager) delete(ctx context.Context, name string, onlyStopped bool) (bool, error) {
	unlock, err := m.lock(ctx, name)
	if err != nil {
		return false, err
	}
	defer unlock()
	r, err := m.load(name)
	if err != nil {
		return false, err
	}
	if onlyStopped && m.runOf(name) != nil {
		return false, nil
	}
	var errs []error
	if rn := m.runOf(name); rn != nil {
		errs = append(errs, m.kill(name, rn))
	}
	errs = append(errs, m.cleanupRun(ctx, r), removeAll(m.vmDir(r)))
	if m.cfg.Guest != nil {
		errs = append(errs, m.cfg.Guest.Forget(r.Name, r.IP))
	}
	if err := errors.Join(errs...); err != nil {
		return false, fmt.Errorf("delete vm %q: %w", name, err)
	}
	return true, m.cfg.Store.Delete(state.KindVM, name)
}

// Reconcile runs once at daemon start: VMs whose VMM still runs are adopted,
// the others are marked stopped and their leftovers cleaned.
func (m *Manager) Reconcile(ctx context.Context) error {
	recs, err := state.All[record](m.cfg.Store, state.KindVM)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range recs {
		if r.Machine == nil {
			continue
		}
		mach, err := m.cfg.Backend.Adopt(*r.Machine)
		if err == nil {
			rn := &run{m: mach, agent: dialAgent(*r.Machine), exited: make(chan struct{})}
			m.mu.Lock()
			m.runs[r.Name] = rn
			m.mu.Unlock()
			go m.watch(r.Name, rn)
			m.cfg.Log.Info("adopted running vm", "vm", r.Name, "pid", mach.PID())
			if err := m.hostSide(ctx, r); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		m.cfg.Log.Info("vm is no longer running", "vm", r.Name, "reason", err)
		r.Machine = nil
		errs = append(errs, m.cleanupRun(ctx, r), m.save(r))
	}
	return errors.Join(errs...)
}

// LogPath is a VM's console log.
func (m *Manager) LogPath(name string) (string, error) {
	r, err := m.load(name)
	if err != nil {
		return "", err
	}
	return filepath.Join(m.vmDir(r), consoleLog), nil
}
