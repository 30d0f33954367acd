package firecracker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/banger/banger/internal/guest/agent"
	"github.com/banger/banger/internal/vmm"
	"github.com/banger/banger/internal/vmm/firecracker/firecrackertest"
)

// fakeJails does what the root helper does in jailer mode, without root:
// it mirrors the files and dirs into a jail and starts the fake
// firecracker with the jailer's arguments, told to see the jail as its
// root. It records the cleanups it is asked for.
type fakeJails struct {
	base string
	cfg  firecrackertest.Config

	mu      sync.Mutex
	cleaned []string
}

func (j *fakeJails) LaunchJail(ctx context.Context, r JailRequest) (Jailed, error) {
	root := filepath.Join(j.base, "firecracker", r.ID, "root")
	for _, f := range r.Files {
		os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o711)
		if err := os.Link(f, filepath.Join(root, f)); err != nil {
			return Jailed{}, err
		}
	}
	for _, d := range r.Dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return Jailed{}, err
		}
	}
	cfg := j.cfg
	cfg.Chroot = root
	cfgPath := filepath.Join(j.base, r.ID+".json")
	if err := firecrackertest.WriteConfig(cfgPath, cfg); err != nil {
		return Jailed{}, err
	}
	console, err := os.OpenFile(r.ConsoleLog, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return Jailed{}, err
	}
	defer console.Close()
	cmd := exec.Command(r.Firecracker, "--id", r.ID, "--start-time-us", "1", "--start-time-cpu-us", "2", "--parent-cpu-time-us", "3", "--api-sock", r.APISocket)
	cmd.Env = append(os.Environ(), firecrackertest.EnvConfig+"="+cfgPath)
	cmd.Stdout, cmd.Stderr = console, console
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Jailed{}, err
	}
	start := vmm.StartTime(cmd.Process.Pid)
	go cmd.Wait()
	return Jailed{PID: cmd.Process.Pid, StartTime: start, Root: root}, nil
}

func (j *fakeJails) CleanupJail(ctx context.Context, id string) error {
	j.mu.Lock()
	j.cleaned = append(j.cleaned, id)
	j.mu.Unlock()
	return os.RemoveAll(filepath.Join(j.base, "firecracker", id))
}

func (j *fakeJails) cleanups() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.cleaned)
}

func TestStartJailed(t *testing.T) {
	fx := newFixture(t, firecrackertest.Config{})
	jails := &fakeJails{base: filepath.Join(fx.dir, "jails"), cfg: firecrackertest.Config{Records: fx.records, Agent: fx.self}}
	// The kernel must be a file of its own to be hard-linked.
	os.Remove(fx.spec.Kernel)
	copyExecutable(t, fx.self, fx.spec.Kernel)
	b := New(Config{Binary: fx.self, StartTimeout: 5 * time.Second, Jailer: &Jailer{Binary: "/usr/bin/jailer", Jails: jails}})
	ctx := testContext(t)
	m, err := b.Start(ctx, fx.spec)
	if err != nil {
		t.Fatal(err)
	}
	reap(t, m)
	root := filepath.Join(jails.base, "firecracker", "f1", "root")

	// The same requests as without the jailer: every path is the host's.
	want := bootRequests()
	want[0] = "start --id f1 --api-sock $D/run/fc.sock"
	if diff := cmp.Diff(want, fx.requests(t, false)); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	rec := m.Record()
	if rec.Jail != root || rec.ControlSocket != fx.spec.RunDir+"/fc.sock" || rec.AgentVsockPort != AgentPort {
		t.Errorf("record %+v", rec)
	}
	for _, name := range []string{"fc.sock", "agent.sock", "firecracker.log", "firecracker.metrics"} {
		link := filepath.Join(fx.spec.RunDir, name)
		if got, err := os.Readlink(link); err != nil || got != filepath.Join(root, link) {
			t.Errorf("%s -> %q (%v), want a link into the jail", link, got, err)
		}
	}

	c := agent.NewClient(agent.ClientConfig{Dial: func(ctx context.Context) (net.Conn, error) {
		return agent.DialFirecrackerVsock(ctx, rec.AgentSocket, rec.AgentVsockPort)
	}})
	defer c.Close()
	if _, err := c.WaitReady(ctx, 20*time.Millisecond); err != nil {
		t.Fatalf("agent through the jail's vsock socket: %v", err)
	}

	// A daemon restart adopts it (and will remove the jail after it).
	adopted, err := b.Adopt(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	adopted.Wait(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(root); errors.Is(err, os.ErrNotExist) && len(jails.cleanups()) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jail not removed after firecracker exited (cleanups %q)", jails.cleanups())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Adopting it once it is gone removes the jail again (a daemon that
	// was down when the VM stopped).
	n := len(jails.cleanups())
	if _, err := b.Adopt(rec); !errors.Is(err, vmm.ErrGone) {
		t.Errorf("adopt after exit: %v, want ErrGone", err)
	}
	if got := jails.cleanups(); len(got) != n+1 || got[n] != "f1" {
		t.Errorf("cleanups %q, want one more for f1", got)
	}
}

func TestStartJailedFailureRemovesJail(t *testing.T) {
	fx := newFixture(t, firecrackertest.Config{})
	faults := map[string]string{"PUT /drives/banger_work": "Unable to create the block device: injected"}
	jails := &fakeJails{base: filepath.Join(fx.dir, "jails"), cfg: firecrackertest.Config{Records: fx.records, Agent: fx.self, Faults: faults}}
	os.Remove(fx.spec.Kernel)
	copyExecutable(t, fx.self, fx.spec.Kernel)
	b := New(Config{Binary: fx.self, StartTimeout: 5 * time.Second, Jailer: &Jailer{Binary: "/usr/bin/jailer", Jails: jails}})
	_, err := b.Start(testContext(t), fx.spec)
	if err == nil || err.Error() != `firecracker refused PUT /drives/banger_work (400): Unable to create the block device: injected` {
		t.Fatalf("error %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(jails.cleanups()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the jail of a failed start was not removed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestJailID(t *testing.T) {
	tests := []struct{ root, want, err string }{
		{root: "/var/lib/banger-jailer/firecracker/ab12/root", want: "ab12"},
		{root: "/var/lib/banger-jailer/firecracker/ab12", err: "not a jail root"},
		{root: "/etc", err: "not a jail root"},
	}
	for _, tt := range tests {
		got, err := JailID(tt.root)
		if got != tt.want || (err == nil) != (tt.err == "") {
			t.Errorf("JailID(%q) = %q, %v", tt.root, got, err)
		}
	}
}

func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(fmt.Errorf("copy %s: %w", src, err))
	}
}
