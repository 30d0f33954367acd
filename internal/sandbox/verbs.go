package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/command"
	"github.com/banger/banger/internal/config"
	"github.com/banger/banger/internal/portfwd"
)

// Set changes a VM. vCPUs, memory and disk size need the VM stopped (the
// disk can only grow); NAT can change while it runs.
func (m *Manager) Set(ctx context.Context, name string, req api.SetVM) (api.VM, error) {
	return m.withVM(ctx, name, func(r record) (api.VM, error) {
		running := m.runOf(name) != nil
		if running && (req.VCPU != nil || req.MemoryMiB != nil || req.DiskBytes != nil) {
			return api.VM{}, api.WithHint(api.Errorf(api.CodeConflict, "vm %q is running: vcpu, memory and disk size change only while it is stopped", name),
				"banger vm stop "+name+", then set, then start")
		}
		if req.VCPU != nil {
			if v := *req.VCPU; v < config.MinVCPU || v > config.MaxVCPU {
				return api.VM{}, api.Errorf(api.CodeBadRequest, "--vcpu %d: must be between %d and %d", v, config.MinVCPU, config.MaxVCPU)
			}
			r.VCPU = *req.VCPU
		}
		if req.MemoryMiB != nil {
			if v := *req.MemoryMiB; v < config.MinMemoryMiB || v > config.MaxMemoryMiB {
				return api.VM{}, api.Errorf(api.CodeBadRequest, "--memory %d: must be between %d and %d MiB", v, config.MinMemoryMiB, config.MaxMemoryMiB)
			}
			r.MemoryMiB = *req.MemoryMiB
		}
		if req.DiskBytes != nil && *req.DiskBytes != r.DiskBytes {
			size := *req.DiskBytes
			if size < r.DiskBytes {
				return api.VM{}, api.WithHint(api.Errorf(api.CodeBadRequest, "--disk-size %s is smaller than the current %s: disks only grow",
					config.FormatSize(size), config.FormatSize(r.DiskBytes)), "pass a larger size")
			}
			if size > config.MaxDiskBytes {
				return api.VM{}, api.Errorf(api.CodeBadRequest, "--disk-size %s: at most %s", config.FormatSize(size), config.FormatSize(config.MaxDiskBytes))
			}
			if err := growDisk(ctx, filepath.Join(m.vmDir(r), workDisk), size); err != nil {
				return api.VM{}, fmt.Errorf("grow the work disk of vm %q: %w", name, err)
			}
			r.DiskBytes = size
		}
		if req.NAT != nil && *req.NAT != r.NAT {
			if running {
				var err error
				if *req.NAT {
					err = m.cfg.Net.AddNAT(ctx, r.Tap, r.IP)
				} else {
					err = m.cfg.Net.RemoveNAT(ctx, r.Tap, r.IP)
				}
				if err != nil {
					return api.VM{}, fmt.Errorf("set NAT of vm %q: %w", name, err)
				}
			}
			r.NAT = *req.NAT
		}
		if err := m.save(r); err != nil {
			return api.VM{}, err
		}
		return m.view(r), nil
	})
}

// growDisk enlarges an ext4 image file and its filesystem.
func growDisk(ctx context.Context, path string, size int64) error {
	if err := os.Truncate(path, size); err != nil {
		return err
	}
	if _, err := command.Output(ctx, "e2fsck", "-fp", path); err != nil {
		return err
	}
	return command.Run(ctx, "resize2fs", path, strconv.FormatInt(size/1024, 10)+"K")
}

// Ports lists what listens in a running guest, with how the host reaches it.
func (m *Manager) Ports(ctx context.Context, name string) ([]api.Port, error) {
	if _, err := m.load(name); err != nil {
		return nil, err
	}
	rn := m.runOf(name)
	if rn == nil {
		return nil, api.WithHint(api.Errorf(api.CodeConflict, "vm %q is not running", name), "banger vm start "+name)
	}
	ps, err := rn.agent.Ports(ctx)
	if err != nil {
		return nil, fmt.Errorf("list ports of vm %q: %w", name, err)
	}
	out := make([]api.Port, 0, len(ps))
	for _, p := range ps {
		out = append(out, api.Port{Proto: p.Proto, Address: p.Address.String(), Port: p.Port, Process: p.Process,
			Reach: fmt.Sprintf("%s.vm:%d", name, p.Port)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Proto != out[j].Proto {
			return out[i].Proto < out[j].Proto
		}
		return out[i].Port < out[j].Port
	})
	return out, nil
}

// Stats reports a VM's resource use from its VMM process and disks.
func (m *Manager) Stats(ctx context.Context, name string) (api.VMStats, error) {
	r, err := m.load(name)
	if err != nil {
		return api.VMStats{}, err
	}
	v := m.view(r)
	st := api.VMStats{Name: name, State: v.State}
	st.LayerBytes = allocated(filepath.Join(m.vmDir(r), layerDisk))
	st.WorkBytes = allocated(filepath.Join(m.vmDir(r), workDisk))
	if rn := m.runOf(name); rn != nil {
		cpu, rss, started, err := procUsage(rn.m.PID())
		if err == nil {
			st.CPUSeconds, st.RSSBytes = cpu, rss
			st.UptimeSecond = time.Since(started).Seconds()
		}
	}
	return st, nil
}

func allocated(path string) int64 {
	var s syscall.Stat_t
	if err := syscall.Stat(path, &s); err != nil {
		return 0
	}
	return s.Blocks * 512
}

// procUsage reads a process's CPU time, resident memory and start time.
func procUsage(pid int) (cpuSeconds float64, rss int64, started time.Time, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, time.Time{}, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 22 {
		return 0, 0, time.Time{}, errors.New("short /proc stat")
	}
	const hz = 100 // USER_HZ on Linux
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	startTicks, _ := strconv.ParseFloat(f[19], 64)
	pages, _ := strconv.ParseInt(f[21], 10, 64)
	var info syscall.Sysinfo_t
	syscall.Sysinfo(&info)
	boot := time.Now().Add(-time.Duration(info.Uptime) * time.Second)
	return (utime + stime) / hz, pages * int64(os.Getpagesize()), boot.Add(time.Duration(startTicks / hz * float64(time.Second))), nil
}

// Prune deletes every VM that is not running and returns their names.
func (m *Manager) Prune(ctx context.Context) ([]string, error) {
	vms, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	var deleted []string
	var errs []error
	for _, v := range vms {
		if v.State == api.StateRunning {
			continue
		}
		ok, err := m.delete(ctx, v.Name, true)
		if err != nil {
			errs = append(errs, err)
		}
		if ok && err == nil {
			deleted = append(deleted, v.Name)
		}
	}
	return deleted, errors.Join(errs...)
}

// AddForwards adds host-to-guest port forwards to a VM, opening them now if
// it runs; they are kept for later starts.
func (m *Manager) AddForwards(ctx context.Context, name string, specs []string) (api.VM, error) {
	return m.withVM(ctx, name, func(r record) (api.VM, error) {
		var added []string
		for _, s := range specs {
			p, err := portfwd.ParseSpec(s)
			if err != nil {
				return api.VM{}, api.Errorf(api.CodeBadRequest, "%v", err)
			}
			if !slices.Contains(r.Forwards, p.String()) {
				added = append(added, p.String())
			}
		}
		if len(added) == 0 {
			return m.view(r), nil
		}
		if m.cfg.Forwards == nil {
			return api.VM{}, api.Errorf(api.CodeUnavailable, "port forwarding is not available")
		}
		if rn := m.runOf(name); rn != nil {
			// Reopen the VM's forwards with the new set, all or nothing.
			m.cfg.Forwards.Close(name)
			next := r
			next.Forwards = append(slices.Clone(r.Forwards), added...)
			if err := m.hostSideForwards(ctx, next); err != nil {
				m.hostSideForwards(ctx, r)
				return api.VM{}, err
			}
		}
		r.Forwards = append(r.Forwards, added...)
		if err := m.save(r); err != nil {
			return api.VM{}, err
		}
		return m.view(r), nil
	})
}
