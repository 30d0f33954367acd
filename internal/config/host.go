package config

import (
	"bufio"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// HostFacts are what the [vm_defaults] heuristic knows about the host.
type HostFacts struct {
	CPUs        int
	MemoryBytes uint64
}

// DetectHost reads the CPU count and /proc/meminfo. Facts it cannot read
// are zero, which makes the heuristic fall back to the built-in floor.
func DetectHost() HostFacts {
	h := HostFacts{CPUs: runtime.NumCPU()}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		h.MemoryBytes = memTotal(f)
		f.Close()
	}
	return h
}

// memTotal returns the MemTotal line of /proc/meminfo in bytes, 0 if absent.
func memTotal(r io.Reader) uint64 {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil || kb > (1<<54) {
			return 0
		}
		return kb * 1024
	}
	return 0
}

// Source says where a resolved [vm_defaults] value came from.
type Source string

const (
	SourceConfig  Source = "config"  // a config file set it
	SourceHost    Source = "host"    // the host heuristic
	SourceBuiltin Source = "builtin" // the floor, when the heuristic came out lower
)

// Sourced is a resolved value with its provenance, for `banger doctor`.
type Sourced[T any] struct {
	Value  T
	Source Source
	File   string // the config file that set it, when Source is SourceConfig
}

// VMDefaults are the sizes a VM gets when the user passes no flag.
type VMDefaults struct {
	VCPU      Sourced[int]
	MemoryMiB Sourced[int]
	DiskBytes Sourced[int64]
}

// Limits of the [vm_defaults] keys; the CLI and the daemon check flags
// against the same numbers.
const (
	MinVCPU      = 1
	MaxVCPU      = 64
	MinMemoryMiB = 128
	MaxMemoryMiB = 262144
	MinDiskBytes = GiB
	MaxDiskBytes = 16 * TiB
)

// The built-in floor under the heuristic. The disk floor equals the
// heuristic's disk size, so disk always reports SourceHost.
const (
	floorVCPU      = 1
	floorMemoryMiB = 1024
	floorDiskBytes = 8 * GiB
)

// hostDefaults is the heuristic: a quarter of the CPUs (at most 4), an eighth
// of the RAM (at most 8 GiB, in steps of 256 MiB), 8 GiB of disk; anything
// under the floor becomes the floor.
func hostDefaults(h HostFacts) VMDefaults {
	mib := h.MemoryBytes / 8 / uint64(MiB)
	mib = min(mib, 8192)
	mib -= mib % 256
	return VMDefaults{
		VCPU:      atLeast(min(max(h.CPUs, 0)/4, 4), floorVCPU),
		MemoryMiB: atLeast(int(mib), floorMemoryMiB),
		DiskBytes: atLeast(8*GiB, floorDiskBytes),
	}
}

func atLeast[T int | int64](v, floor T) Sourced[T] {
	if v < floor {
		return Sourced[T]{Value: floor, Source: SourceBuiltin}
	}
	return Sourced[T]{Value: v, Source: SourceHost}
}
