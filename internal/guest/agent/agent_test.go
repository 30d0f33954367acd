package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestMain lets the test binary stand in for systemctl: a symlink named
// systemctl pointing at it prints a fixed state, as systemctl does on a
// degraded system (with a non-zero exit).
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "systemctl" {
		if len(os.Args) == 2 && os.Args[1] == "is-system-running" {
			fmt.Println("degraded")
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "fake systemctl: unexpected", os.Args[1:])
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// serveUnix runs a on a unix socket and returns a client for it, the way
// vsock connections reach it: one stream per HTTP connection.
func serveUnix(t *testing.T, a *Agent, cfg ClientConfig) *Client {
	t.Helper()
	sock := listenUnix(t, a)
	if cfg.Dial == nil {
		cfg.Dial = func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
	}
	c := NewClient(cfg)
	t.Cleanup(func() { c.Close() })
	return c
}

// listenUnix serves a on a new unix socket until the test ends.
func listenUnix(t *testing.T, a *Agent) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Serve(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return sock
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHealth(t *testing.T) {
	proc := t.TempDir()
	writeFiles(t, proc, map[string]string{
		"sys/kernel/random/boot_id": "3f0c1c5e-8f6a-4b43-9d2e-0a4c2d0e9b11\n",
		"sys/kernel/hostname":       "devbox\n",
		"uptime":                    "12.34 20.00\n",
	})
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(t.TempDir(), "systemctl")
	if err := os.Symlink(self, fake); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		systemctl string
		want      Health
	}{
		{"systemd", fake, Health{Ready: true, BootID: "3f0c1c5e-8f6a-4b43-9d2e-0a4c2d0e9b11", UptimeSeconds: 12.34,
			AgentVersion: "1.2.3", Hostname: "devbox", SystemdState: "degraded"}},
		{"no systemctl", filepath.Join(t.TempDir(), "missing"), Health{Ready: true, BootID: "3f0c1c5e-8f6a-4b43-9d2e-0a4c2d0e9b11",
			UptimeSeconds: 12.34, AgentVersion: "1.2.3", Hostname: "devbox"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := serveUnix(t, New(Config{Version: "1.2.3", Proc: proc, Systemctl: tt.systemctl}), ClientConfig{})
			got, err := c.Health(testContext(t))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("health (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWaitReadyPollsUntilTheAgentAnswers(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	c := NewClient(ClientConfig{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}})
	defer c.Close()
	ctx := testContext(t)
	go func() {
		time.Sleep(200 * time.Millisecond)
		ln, err := net.Listen("unix", sock)
		if err != nil {
			return
		}
		New(Config{Version: "v"}).Serve(ctx, ln)
	}()
	h, err := c.WaitReady(ctx, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Ready || h.AgentVersion != "v" {
		t.Errorf("health = %+v", h)
	}

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	never := NewClient(ClientConfig{Dial: func(ctx context.Context) (net.Conn, error) {
		return nil, errors.New("no route")
	}})
	if _, err := never.WaitReady(short, 10*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no route") {
		t.Errorf("WaitReady on a dead agent = %v, want a deadline error naming the last failure", err)
	}
}

func TestShutdownAnswersThenPowersOff(t *testing.T) {
	var mu sync.Mutex
	var calls []bool
	called := make(chan struct{}, 2)
	a := New(Config{PowerOff: func(ctx context.Context, reboot bool) error {
		mu.Lock()
		calls = append(calls, reboot)
		mu.Unlock()
		called <- struct{}{}
		return nil
	}})
	c := serveUnix(t, a, ClientConfig{})
	ctx := testContext(t)
	for _, reboot := range []bool{false, true} {
		if err := c.Shutdown(ctx, reboot); err != nil {
			t.Fatal(err)
		}
		select {
		case <-called:
		case <-ctx.Done():
			t.Fatal("power off never called")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]bool{false, true}, calls); diff != "" {
		t.Errorf("power off calls (-want +got):\n%s", diff)
	}
}

func TestErrorsCarryCodes(t *testing.T) {
	c := serveUnix(t, New(Config{Root: t.TempDir()}), ClientConfig{})
	ctx := testContext(t)
	_, err := c.ReadFile(ctx, "/nope")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("ReadFile of a missing file = %v, want ErrNotFound", err)
	}
	_, err = c.CopyFrom(ctx, "relative/path")
	if !errors.Is(err, ErrBadRequest) {
		t.Errorf("CopyFrom of a relative path = %v, want ErrBadRequest", err)
	}
	if _, err := c.Exec(ctx, ExecRequest{Argv: []string{"true"}, Env: []string{"NOEQUALS"}}, nil, nil, nil, nil, nil); !errors.Is(err, ErrBadRequest) {
		t.Errorf("Exec with a bad env entry = %v, want ErrBadRequest", err)
	}
	if err := c.callJSON(ctx, "POST", "/v1/exec", ExecRequest{Argv: []string{"true"}}, nil, 101); !errors.Is(err, ErrBadRequest) {
		t.Errorf("exec without Upgrade = %v, want ErrBadRequest", err)
	}
}
