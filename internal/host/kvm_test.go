package host

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestProbeKVM runs the real probe. Whatever the host, the verdict must be
// consistent with what happened and must come back in bounded time.
func TestProbeKVM(t *testing.T) {
	start := time.Now()
	k := ProbeKVM(t.Context())
	elapsed := time.Since(start)
	t.Logf("%+v in %v", k, elapsed)

	if limit := guestTimeout + time.Second; elapsed > limit {
		t.Errorf("ProbeKVM took %v, want under %v", elapsed, limit)
	}
	if k.Reason == "" {
		t.Error("empty Reason")
	}
	if k.Writable && !k.Present || k.Usable && !k.Writable {
		t.Errorf("inconsistent %+v", k)
	}
	p := kvmProbe{dev: "/dev/kvm", cpuinfo: "/proc/cpuinfo", timeout: guestTimeout}
	if flag, known, _ := p.cpu(); known && flag == "" && k.Usable {
		t.Errorf("Usable without vmx/svm in /proc/cpuinfo: %+v", k)
	}
	if k.Usable {
		// A usable verdict must mean the guest really ran every step.
		_, trace := p.probe(t.Context())
		if diff := cmp.Diff(wantGuestTrace(), trace); diff != "" {
			t.Errorf("guest trace (-want +got):\n%s", diff)
		}
	}
	if k.Present && k.Writable && !k.Usable && runtime.GOARCH == "amd64" && !strings.HasPrefix(k.Reason, hangReason) {
		t.Errorf("Reason %q, want it to start with %q", k.Reason, hangReason)
	}
}

// TestProbeKVMDeadline drives the interrupt path: with a deadline far
// shorter than the guest's spin, a vCPU thread stuck in KVM_RUN must be
// signalled out quickly.
func TestProbeKVMDeadline(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		cancel  bool
		reason  string
	}{
		{name: "deadline", timeout: time.Millisecond, reason: hangReason},
		{name: "canceled", timeout: time.Minute, cancel: true, reason: "probe kvm: context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.cancel {
				time.AfterFunc(10*time.Millisecond, cancel)
			}
			start := time.Now()
			k, trace := kvmProbe{dev: "/dev/kvm", cpuinfo: "/proc/cpuinfo", modules: "/sys/module", timeout: tt.timeout}.probe(ctx)
			elapsed := time.Since(start)
			t.Logf("%+v %q in %v", k, trace, elapsed)
			if !k.Writable || runtime.GOARCH != "amd64" {
				t.Skipf("no writable /dev/kvm on amd64: %s", k.Reason)
			}
			if elapsed > time.Second {
				t.Errorf("took %v after the deadline, want well under a second", elapsed)
			}
			if k.Usable {
				// Hardware KVM may finish the guest before the deadline.
				if !slices.Equal(trace, wantGuestTrace()) {
					t.Errorf("Usable with trace %q", trace)
				}
				return
			}
			if !strings.HasPrefix(k.Reason, tt.reason) {
				t.Errorf("Reason %q, want prefix %q", k.Reason, tt.reason)
			}
		})
	}
}

func TestProbeKVMNoDevice(t *testing.T) {
	dir := t.TempDir()
	cpuinfo := func(flags string) string {
		p := filepath.Join(dir, "cpuinfo-"+strings.ReplaceAll(flags, " ", "_"))
		text := "processor\t: 0\nflags\t\t: " + flags + "\n\nprocessor\t: 1\nflags\t\t: " + flags + "\n"
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "kvm")
	x86 := runtime.GOARCH == "amd64" || runtime.GOARCH == "386"

	tests := []struct {
		name    string
		dev     string
		cpuinfo string
		want    string
	}{
		{"vmx", missing, cpuinfo("fpu vme vmx sse"), "no " + missing + "; cpu has vmx; load the module: modprobe kvm_intel"},
		{"svm", missing, cpuinfo("fpu svm sse"), "no " + missing + "; cpu has svm; load the module: modprobe kvm_amd"},
		{"none", missing, cpuinfo("fpu sse hypervisor"),
			"no " + missing + "; no vmx/svm in " + filepath.Join(dir, "cpuinfo-fpu_sse_hypervisor") +
				"; enable virtualization in the firmware, or use a VM with nested virtualization"},
		{"unreadable cpuinfo", missing, filepath.Join(dir, "nope"),
			"no " + missing + "; read " + filepath.Join(dir, "nope") + ": open " + filepath.Join(dir, "nope") + ": no such file or directory; load the kvm module"},
		{"not a device", regular, cpuinfo("vmx"), regular + " is not a character device; cpu has vmx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !x86 {
				t.Skip("cpuinfo flags are only read on x86")
			}
			got, trace := kvmProbe{dev: tt.dev, cpuinfo: tt.cpuinfo, timeout: time.Second}.probe(t.Context())
			if diff := cmp.Diff(KVM{Reason: tt.want}, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if trace != nil {
				t.Errorf("trace %q without a guest", trace)
			}
		})
	}
}

func TestVirtFlag(t *testing.T) {
	tests := []struct {
		name, cpuinfo, want string
	}{
		{"intel", "processor\t: 0\nflags\t\t: fpu vme de vmx smx\n", "vmx"},
		{"amd", "processor\t: 0\nflags\t\t: fpu svm lm\n", "svm"},
		{"none", "processor\t: 0\nflags\t\t: fpu hypervisor lm\n", ""},
		{"substring is not a flag", "flags\t\t: vmxx svmx\n", ""},
		{"vmx in another field", "model name\t: vmx svm\nflags\t\t: fpu\n", ""},
		{"vmx_flags line", "vmx flags\t: vnmi ept\nflags\t\t: fpu\n", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := virtFlag(strings.NewReader(tt.cpuinfo))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("virtFlag = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPVMNote(t *testing.T) {
	withPVM := tree(t, map[string]string{"kvm/": "", "kvm_pvm/": ""})
	withoutPVM := tree(t, map[string]string{"kvm/": "", "kvm_intel/": ""})
	tests := []struct{ modules, want string }{
		{withPVM, "kvm_pvm (paravirtual KVM) is loaded"},
		{withoutPVM, ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := (kvmProbe{modules: tt.modules}).pvmNote(); got != tt.want {
			t.Errorf("pvmNote(%q) = %q, want %q", tt.modules, got, tt.want)
		}
	}
}
