package qemu

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/banger/banger/internal/vmm"
)

// fakeSpec is a valid spec whose files exist, in a short run dir (t.TempDir
// paths can exceed a socket path's 107 bytes).
func fakeSpec(t *testing.T) vmm.Spec {
	t.Helper()
	dir := shortDir(t)
	kernel := filepath.Join(dir, "vmlinuz")
	disk := filepath.Join(dir, "root.img")
	for _, p := range []string{kernel, disk} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return vmm.Spec{
		Name: "fake", ID: "f1", VCPU: 1, MemoryMiB: 128,
		Kernel: kernel, Cmdline: "console=ttyS0",
		Disks:       []vmm.Disk{{Path: disk, ReadOnly: true, Serial: "banger-root"}},
		AgentSocket: filepath.Join(dir, "run", "agent.sock"),
		ConsoleLog:  filepath.Join(dir, "console.log"),
		RunDir:      filepath.Join(dir, "run"),
		Accel:       vmm.AccelTCG,
	}
}

func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bvmm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func fakeBackend(t *testing.T, behaviour string) *Backend {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("BANGER_FAKE_QEMU", behaviour)
	return New(Config{Binary: self, StartTimeout: 2 * time.Second})
}

// reap kills m at the end of the test and checks nothing is left behind.
func reap(t *testing.T, m *vmm.Machine) {
	t.Cleanup(func() {
		m.Kill()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Wait(ctx); err != nil {
			t.Errorf("vmm pid %d left behind: %v", m.PID(), err)
		}
	})
}

// session reads field 6 of /proc/<pid>/stat.
func session(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	sid, err := strconv.Atoi(f[3])
	if err != nil {
		t.Fatal(err)
	}
	return sid
}

func TestStart(t *testing.T) {
	b := fakeBackend(t, "serve")
	spec := fakeSpec(t)
	m, err := b.Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	reap(t, m)

	rec := m.Record()
	want := vmm.Record{
		Backend:       "qemu",
		PID:           m.PID(),
		StartTime:     rec.StartTime,
		BootID:        rec.BootID,
		ControlSocket: QMPSocket(spec.RunDir),
		AgentSocket:   spec.AgentSocket,
		Log:           LogFile(spec.RunDir),
		Argv:          append([]string{b.cfg.Binary}, Args(spec, Options{Sandbox: true})...),
	}
	if d := cmp.Diff(want, rec); d != "" {
		t.Errorf("Record (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]int{m.PID()}, procsNaming(t, QMPSocket(spec.RunDir))); d != "" {
		t.Errorf("processes naming the run dir (-want +got):\n%s", d)
	}
	if sid := session(t, m.PID()); sid != m.PID() {
		t.Errorf("qemu runs in session %d, want its own (%d)", sid, m.PID())
	}
	log, err := os.ReadFile(LogFile(spec.RunDir))
	if err != nil || !strings.Contains(string(log), "fake qemu listening") {
		t.Errorf("qemu.log = %q, %v; want the fake's output", log, err)
	}
	fi, err := os.Stat(spec.RunDir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("run dir: %v, %v; want mode 0700", fi.Mode(), err)
	}

	q, err := DialQMP(t.Context(), rec.ControlSocket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := q.Status(t.Context())
	q.Close()
	if err != nil || st != (Status{Status: "running", Running: true}) {
		t.Errorf("Status = %+v, %v", st, err)
	}

	// A second VMM in the same run dir is refused while the first runs.
	if _, err := b.Start(t.Context(), spec); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Start in the same run dir = %v, want an in-use error", err)
	}

	// A restarted daemon adopts it, and shuts it down through QMP.
	adopted, err := b.Adopt(rec)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := adopted.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := m.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if adopted.Alive() || m.Alive() {
		t.Error("alive after Shutdown")
	}
}

func TestStartFailures(t *testing.T) {
	tests := []struct {
		name      string
		behaviour string
		change    func(*vmm.Spec)
		want      []string
	}{
		{"qemu exits", "fail", func(*vmm.Spec) {}, []string{"qemu exited during start", "Could not open '/nope'"}},
		{"qemu never answers", "hang", func(*vmm.Spec) {}, []string{"did not open its QMP socket within 300ms"}},
		{"missing kernel", "serve", func(s *vmm.Spec) { s.Kernel += ".gone" }, []string{"vmlinuz.gone: no such file"}},
		{"missing disk", "serve", func(s *vmm.Spec) { s.Disks[0].Path += ".gone" }, []string{"root.img.gone: no such file"}},
		{"invalid spec", "serve", func(s *vmm.Spec) { s.VCPU = 0 }, []string{"vcpu 0 out of range"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := fakeBackend(t, tt.behaviour)
			b.cfg.StartTimeout = 300 * time.Millisecond
			spec := fakeSpec(t)
			tt.change(&spec)
			m, err := b.Start(t.Context(), spec)
			if err == nil {
				reap(t, m)
				t.Fatal("Start succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Start error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if pids := procsNaming(t, QMPSocket(spec.RunDir)); len(pids) > 0 {
				t.Errorf("processes %v outlived a failed Start", pids)
			}
		})
	}
}

func TestStartKillsOnCancel(t *testing.T) {
	b := fakeBackend(t, "hang")
	spec := fakeSpec(t)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Start(ctx, spec)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Start took %v after its context ended", d)
	}
	if pids := procsNaming(t, QMPSocket(spec.RunDir)); len(pids) > 0 {
		t.Errorf("processes %v outlived a cancelled Start", pids)
	}
}

// procsNaming lists the processes whose command line mentions s (a run
// dir's socket names one VM's QEMU and nothing else).
func procsNaming(t *testing.T, s string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestStartClearsStaleSocket(t *testing.T) {
	b := fakeBackend(t, "serve")
	spec := fakeSpec(t)
	if err := os.MkdirAll(spec.RunDir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A socket file nobody listens on, as a crashed QEMU leaves.
	l, err := net.Listen("unix", QMPSocket(spec.RunDir))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	m, err := b.Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("Start over a stale socket: %v", err)
	}
	reap(t, m)
}

// An already-open tap reaches QEMU as descriptor 3, which the argv names.
func TestStartPassesTapFD(t *testing.T) {
	b := fakeBackend(t, "serve")
	spec := fakeSpec(t)
	r, w, err := os.Pipe() // stands in for the tap the root helper opened
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	spec.NIC = &vmm.NIC{FD: r, MAC: "52:54:00:12:34:56"}
	m, err := b.Start(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	reap(t, m)
	if !slices.Contains(m.Record().Argv, "tap,id=n0,fd=3") {
		t.Errorf("argv %q lacks the fd-passed tap", m.Record().Argv)
	}
	fi, err := r.Stat()
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	want := "fake qemu fd 3: pipe:[" + strconv.FormatUint(st.Ino, 10) + "]"
	if log, _ := os.ReadFile(LogFile(spec.RunDir)); !strings.Contains(string(log), want) {
		t.Errorf("qemu.log = %q, want %q", log, want)
	}
}

func TestStartWantsAbsoluteBinary(t *testing.T) {
	_, err := New(Config{Binary: "qemu-system-x86_64"}).Start(t.Context(), fakeSpec(t))
	if err == nil || !strings.Contains(err.Error(), "is not an absolute path") {
		t.Fatalf("Start = %v", err)
	}
}

func TestAdoptOtherBackend(t *testing.T) {
	b := New(Config{Binary: "/usr/bin/qemu-system-x86_64"})
	_, err := b.Adopt(vmm.Record{Backend: "firecracker", PID: 1})
	if err == nil || !strings.Contains(err.Error(), `record is for backend "firecracker"`) {
		t.Fatalf("Adopt = %v", err)
	}
}

func TestQMPErrors(t *testing.T) {
	b := fakeBackend(t, "serve")
	m, err := b.Start(t.Context(), fakeSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	reap(t, m)
	q, err := DialQMP(t.Context(), m.Record().ControlSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	err = q.Execute(t.Context(), "no-such-command", nil, nil)
	var qe *QMPError
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Fatalf("Execute(no-such-command) = %v, want a CommandNotFound QMPError", err)
	}
	v, err := q.Version(t.Context())
	if err != nil || v != "7.2.22" {
		t.Errorf("Version = %q, %v", v, err)
	}
	if err := q.Quit(t.Context()); err != nil {
		t.Errorf("Quit: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := m.Wait(ctx); err != nil {
		t.Errorf("Wait after Quit: %v", err)
	}
}
