package host

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// KVM says whether this host can run KVM guests. Usable is decided by
// running guest code: /dev/kvm can exist, open and create VMs on hosts
// (nested, paravirtual) where no real guest boots.
type KVM struct {
	Present  bool
	Writable bool
	Usable   bool
	Reason   string
}

// Stable ioctl numbers (_IO, no payload, identical on every arch).
const (
	kvmGetAPIVersion = 0xAE00
	kvmCreateVM      = 0xAE01
	kvmAPIVersion    = 12
)

const (
	guestTimeout = 2 * time.Second
	// How long to keep signalling a vCPU thread stuck in KVM_RUN before
	// abandoning it.
	interruptGrace = time.Second
	hangReason     = "KVM is present but did not run a test guest (nested or paravirtual KVM?)"
)

// errStopped: KVM_RUN was interrupted because the deadline passed.
var errStopped = errors.New("test guest stopped at the deadline")

// guestError means the test guest itself misbehaved, as opposed to an ioctl
// failing: KVM is there but does not run ordinary guests.
type guestError struct{ msg string }

func (e *guestError) Error() string { return e.msg }

// kvmProbe holds what ProbeKVM reads, so tests can point it elsewhere.
type kvmProbe struct {
	dev     string
	cpuinfo string
	modules string // /sys/module, to name a paravirtual KVM; "" skips it
	timeout time.Duration
}

// ProbeKVM opens /dev/kvm and runs a tiny guest that boots from real mode
// into 64-bit mode, spins, and reports each step through port I/O. It takes
// milliseconds where KVM works and gives up after two seconds where it
// does not.
func ProbeKVM(ctx context.Context) KVM {
	k, _ := kvmProbe{dev: "/dev/kvm", cpuinfo: "/proc/cpuinfo", modules: "/sys/module", timeout: guestTimeout}.probe(ctx)
	return k
}

// probe returns the verdict and, when a guest ran, the exits it produced.
func (p kvmProbe) probe(ctx context.Context) (KVM, []string) {
	var k KVM
	flag, known, note := p.cpu()
	fi, err := os.Stat(p.dev)
	switch {
	case errors.Is(err, os.ErrNotExist):
		k.Reason = join("no "+p.dev, note, missingHint(flag, known))
		return k, nil
	case err != nil:
		k.Reason = join(fmt.Sprintf("stat %s: %v", p.dev, err), note)
		return k, nil
	case fi.Mode()&os.ModeCharDevice == 0:
		k.Reason = join(p.dev+" is not a character device", note)
		return k, nil
	}
	k.Present = true

	fd, err := unix.Open(p.dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		k.Reason = join(fmt.Sprintf("%s not writable by uid %d (add the user to the kvm group)", p.dev, os.Getuid()), note)
		return k, nil
	}
	if err != nil {
		k.Reason = join(fmt.Sprintf("open %s: %v", p.dev, err), note)
		return k, nil
	}
	k.Writable = true

	v, err := unix.IoctlRetInt(fd, kvmGetAPIVersion)
	if err != nil || v != kvmAPIVersion {
		unix.Close(fd)
		if err != nil {
			k.Reason = join(fmt.Sprintf("KVM_GET_API_VERSION: %v", err), note)
		} else {
			k.Reason = join(fmt.Sprintf("KVM API version %d, want %d", v, kvmAPIVersion), note)
		}
		return k, nil
	}

	trace, err := p.runGuest(ctx, fd)
	var ge *guestError
	switch {
	case err == nil:
		k.Usable = true
		k.Reason = join("KVM ran a test guest", note)
	case ctx.Err() != nil:
		k.Reason = fmt.Sprintf("probe kvm: %v", ctx.Err())
	case errors.As(err, &ge):
		k.Reason = join(hangReason, ge.msg, p.pvmNote(), note)
	default:
		k.Reason = join("KVM is present but could not set up a test guest: "+err.Error(), note)
	}
	return k, trace
}

// runGuest takes ownership of the /dev/kvm descriptor. The guest runs on
// its own locked OS thread so that a KVM_RUN that does not return can be
// interrupted with a signal aimed at exactly that thread.
func (p kvmProbe) runGuest(ctx context.Context, kvmFd int) ([]string, error) {
	type result struct {
		trace []string
		err   error
	}
	var stop atomic.Bool
	tidc := make(chan int, 1)
	done := make(chan result, 1)
	go func() {
		// No UnlockOSThread: the thread exits with the goroutine, so a
		// thread that was signalled out of KVM_RUN is never reused.
		runtime.LockOSThread()
		tidc <- unix.Gettid()
		trace, err := runTestGuest(kvmFd, &stop)
		unix.Close(kvmFd)
		done <- result{trace, err}
	}()
	tid := <-tidc

	timer := time.NewTimer(p.timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.trace, r.err
	case <-timer.C:
	case <-ctx.Done():
	}

	stop.Store(true)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	giveUp := time.NewTimer(interruptGrace)
	defer giveUp.Stop()
	for {
		// SIGURG is the runtime's own preemption signal: its handler
		// shrugs off spurious ones, and a pending signal makes KVM_RUN
		// return EINTR. Repeat it in case it landed before the ioctl.
		unix.Tgkill(os.Getpid(), tid, unix.SIGURG)
		select {
		case r := <-done:
			if errors.Is(r.err, errStopped) {
				r.err = &guestError{stalledAt(r.trace, p.timeout)}
			}
			return r.trace, r.err
		case <-tick.C:
		case <-giveUp.C:
			return nil, &guestError{fmt.Sprintf("KVM_RUN ignored signals for %v after the %v deadline", interruptGrace, p.timeout)}
		}
	}
}

// cpu reads the CPU's virtualization flag. known is false off x86 or when
// cpuinfo cannot be read; note says what was found, as information only:
// the verdict comes from running a guest.
func (p kvmProbe) cpu() (flag string, known bool, note string) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "386" {
		return "", false, ""
	}
	f, err := os.Open(p.cpuinfo)
	if err != nil {
		return "", false, fmt.Sprintf("read %s: %v", p.cpuinfo, err)
	}
	defer f.Close()
	flag, err = virtFlag(f)
	if err != nil {
		return "", false, fmt.Sprintf("read %s: %v", p.cpuinfo, err)
	}
	if flag == "" {
		return "", true, "no vmx/svm in " + p.cpuinfo
	}
	return flag, true, "cpu has " + flag
}

// pvmNote names kvm_pvm, the paravirtual KVM some clouds load inside
// their VMs: it creates VMs but emulates ring-0 guest code.
func (p kvmProbe) pvmNote() string {
	if p.modules == "" {
		return ""
	}
	if _, err := os.Stat(filepath.Join(p.modules, "kvm_pvm")); err != nil {
		return ""
	}
	return "kvm_pvm (paravirtual KVM) is loaded"
}

// missingHint says what to do when there is no device node.
func missingHint(flag string, known bool) string {
	switch {
	case !known:
		return "load the kvm module"
	case flag == "vmx":
		return "load the module: modprobe kvm_intel"
	case flag == "svm":
		return "load the module: modprobe kvm_amd"
	}
	return "enable virtualization in the firmware, or use a VM with nested virtualization"
}

// virtFlag returns "vmx", "svm" or "" from /proc/cpuinfo text.
func virtFlag(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, f := range strings.Fields(val) {
			if f == "vmx" || f == "svm" {
				return f, nil
			}
		}
	}
	return "", sc.Err()
}

func join(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, "; ")
}
