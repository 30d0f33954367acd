package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// startFake starts the test binary as a stand-in VMM whose command line
// names ctl, and supervises it as NewChild would a real one.
func startFake(t *testing.T, ctl string) *Machine {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$", "-qmp", "unix:"+ctl+",server=on,wait=off")
	cmd.Env = append(os.Environ(), "BANGER_FAKE_VMM=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m, err := NewChild(ChildConfig{Backend: "fake", Cmd: cmd, ControlSocket: ctl, AgentSocket: "/run/x/agent.sock"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Kill()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Wait(ctx); err != nil {
			t.Errorf("fake vmm left behind: %v", err)
		}
	})
	return m
}

// startSleep is an unrelated live process of this test.
func startSleep(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep binary: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

func TestRecordJSONRoundTrip(t *testing.T) {
	rec := Record{
		Backend:       "qemu",
		PID:           4242,
		StartTime:     123456789,
		BootID:        "5f2c8f3e-0000-4000-8000-000000000000",
		ControlSocket: "/run/banger/vms/a1/qmp.sock",
		AgentSocket:   "/run/banger/vms/a1/agent.sock",
		Log:           "/run/banger/vms/a1/qemu.log",
		Argv:          []string{"/usr/bin/qemu-system-x86_64", "-qmp", "unix:/run/banger/vms/a1/qmp.sock,server=on,wait=off"},
	}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var got Record
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(rec, got); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	for _, key := range []string{`"backend"`, `"pid"`, `"start_time"`, `"boot_id"`, `"control_socket"`, `"agent_socket"`, `"argv"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON %s lacks %s", b, key)
		}
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want procStat
		err  bool
	}{
		{"plain", "42 (qemu-system-x86) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 3 0 987654 0 0", procStat{State: 'S', Session: 42, StartTime: 987654}, false},
		{"comm with spaces and parens", "7 (a) b (c) Z 1 7 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0", procStat{State: 'Z', Session: 3, StartTime: 55}, false},
		{"truncated", "7 (a) S 1 7 7", procStat{}, true},
		{"no comm", "garbage", procStat{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("parseStat err = %v, want error %v", err, tt.err)
			}
			if d := cmp.Diff(tt.want, got, cmp.AllowUnexported(procStat{})); d != "" {
				t.Errorf("parseStat (-want +got):\n%s", d)
			}
		})
	}
}

func TestNewChildRecord(t *testing.T) {
	ctl := filepath.Join(t.TempDir(), "qmp.sock")
	m := startFake(t, ctl)
	rec := m.Record()
	st, err := readStat(m.PID())
	if err != nil {
		t.Fatal(err)
	}
	argv, err := readCmdline(m.PID())
	if err != nil {
		t.Fatal(err)
	}
	boot, err := bootID()
	if err != nil {
		t.Fatal(err)
	}
	want := Record{Backend: "fake", PID: m.PID(), StartTime: st.StartTime, BootID: boot, ControlSocket: ctl, AgentSocket: "/run/x/agent.sock", Argv: argv}
	if d := cmp.Diff(want, rec); d != "" {
		t.Errorf("Record (-want +got):\n%s", d)
	}
	if !m.Alive() {
		t.Error("Alive() = false for a running child")
	}
}

func TestAdopt(t *testing.T) {
	for _, pidfds := range []bool{true, false} {
		name := "pidfd"
		if !pidfds {
			name = "proc polling"
		}
		t.Run(name, func(t *testing.T) {
			child := startFake(t, filepath.Join(t.TempDir(), "qmp.sock"))
			m, err := adopt(child.Record(), nil, pidfds)
			if err != nil {
				t.Fatalf("adopt: %v", err)
			}
			if m.PID() != child.PID() || !m.Alive() {
				t.Fatalf("adopted pid %d alive %v, want pid %d alive", m.PID(), m.Alive(), child.PID())
			}
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			if err := m.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Wait on a running VMM = %v, want a deadline error", err)
			}
			if err := m.Kill(); err != nil {
				t.Fatalf("Kill: %v", err)
			}
			ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := m.Wait(ctx); err != nil {
				t.Fatalf("Wait after Kill: %v", err)
			}
			if err := child.Wait(ctx); err != nil {
				t.Fatalf("child Wait after Kill: %v", err)
			}
			if m.Alive() {
				t.Error("Alive() after Kill and Wait")
			}
			if err := m.Kill(); err != nil {
				t.Errorf("second Kill: %v", err)
			}
			if _, err := os.Stat("/proc/" + strconv.Itoa(child.PID())); err == nil {
				t.Errorf("pid %d still in /proc after Kill and Wait", child.PID())
			}
		})
	}
}

func TestAdoptRefuses(t *testing.T) {
	fake := startFake(t, filepath.Join(t.TempDir(), "qmp.sock"))
	live := fake.Record()
	sleepPID := startSleep(t)

	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skipf("no true binary: %v", err)
	}
	deadPID := dead.Process.Pid

	tests := []struct {
		name   string
		change func(*Record)
		gone   bool
		want   string
	}{
		{"other start time", func(r *Record) { r.StartTime++ }, true, "started at tick"},
		{"other command line", func(r *Record) {
			r.ControlSocket = "/run/banger/vms/other/qmp.sock"
			r.Argv = []string{r.Argv[0], "-qmp", "unix:" + r.ControlSocket}
		}, true, "the pid now runs"},
		{"an unrelated live process", func(r *Record) { r.PID = sleepPID }, true, "vmm process is gone"},
		{"exited pid", func(r *Record) { r.PID = deadPID }, true, "no such process"},
		{"other boot", func(r *Record) { r.BootID = "00000000-0000-0000-0000-000000000000" }, true, "the host rebooted"},
		{"argv without the socket", func(r *Record) { r.ControlSocket = "/elsewhere.sock" }, false, "does not name its control socket"},
		{"empty record", func(r *Record) { *r = Record{} }, false, "record lacks"},
	}
	for _, tt := range tests {
		for _, pidfds := range []bool{true, false} {
			mode := "pidfd"
			if !pidfds {
				mode = "proc"
			}
			t.Run(tt.name+"/"+mode, func(t *testing.T) {
				rec := live
				rec.Argv = append([]string(nil), live.Argv...)
				tt.change(&rec)
				m, err := adopt(rec, nil, pidfds)
				if err == nil {
					m.Kill()
					t.Fatalf("adopt(%+v) succeeded, want a refusal", rec)
				}
				if errors.Is(err, ErrGone) != tt.gone || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("adopt = %v; want ErrGone %v and %q", err, tt.gone, tt.want)
				}
			})
		}
	}
	if !fake.Alive() {
		t.Error("a refused adoption hurt the real VMM")
	}
	if _, err := readStat(sleepPID); err != nil {
		t.Errorf("a refused adoption hurt the unrelated process: %v", err)
	}
}

func TestAdoptWrapsError(t *testing.T) {
	_, err := Adopt(Record{Backend: "qemu", PID: 1}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "adopt qemu pid 1: ") {
		t.Fatalf("Adopt = %v, want an error prefixed with the backend and pid", err)
	}
}

type fakeControl struct {
	calls []string
	do    func() error
}

func (f *fakeControl) Powerdown(ctx context.Context) error {
	f.calls = append(f.calls, "powerdown")
	return f.do()
}

func TestShutdown(t *testing.T) {
	t.Run("guest powers off", func(t *testing.T) {
		m := startFake(t, filepath.Join(t.TempDir(), "qmp.sock"))
		ctl := &fakeControl{do: m.kill} // the VMM exits as a guest poweroff would make it
		m.ctl = ctl
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if m.Alive() {
			t.Error("alive after Shutdown")
		}
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown of an exited VMM: %v", err)
		}
		if d := cmp.Diff([]string{"powerdown"}, ctl.calls); d != "" {
			t.Errorf("control calls (-want +got):\n%s", d)
		}
	})
	t.Run("guest ignores it", func(t *testing.T) {
		m := startFake(t, filepath.Join(t.TempDir(), "qmp.sock"))
		m.ctl = &fakeControl{do: func() error { return nil }}
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if err := m.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want a deadline error", err)
		}
		if !m.Alive() {
			t.Error("Shutdown killed a VMM whose guest ignored it")
		}
	})
	t.Run("control fails", func(t *testing.T) {
		m := startFake(t, filepath.Join(t.TempDir(), "qmp.sock"))
		m.ctl = &fakeControl{do: func() error { return errors.New("connection refused") }}
		if err := m.Shutdown(t.Context()); err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("Shutdown = %v, want the control error", err)
		}
	})
	t.Run("no control", func(t *testing.T) {
		m := startFake(t, filepath.Join(t.TempDir(), "qmp.sock"))
		if err := m.Shutdown(t.Context()); err == nil || !strings.Contains(err.Error(), "no control channel") {
			t.Fatalf("Shutdown = %v, want no control channel", err)
		}
	})
}
