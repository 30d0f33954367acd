// Package e2e drives the real banger binaries: both daemons started without
// systemd (`banger system run`) inside a network namespace made for the test
// run, with temporary state and runtime directories, and the real CLI.
//
// The tests need root, iproute2 and the binaries' prerequisites. Without
// them they skip with the reason, unless BANGER_E2E=1, where a missing
// prerequisite is a failure.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banger/banger/internal/paths"
)

// binDir holds the binaries built once for the whole run.
var binDir string

// ownerName is the unprivileged account the e2e daemons run as.
const ownerName = "banger-e2e"

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run() // every test skips (or fails under BANGER_E2E=1)
		}
		dir, err := os.MkdirTemp("", "banger-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		build := exec.Command("go", "build", "-o", dir+"/", "../cmd/banger", "../cmd/bangerd", "../cmd/bangerd-root", "../cmd/banger-agent")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build binaries: %v\n%s", err, out)
			return 1
		}
		os.Chmod(dir, 0o755)
		binDir = dir
		return m.Run()
	}()
	os.Exit(code)
}

// require skips (or, under BANGER_E2E=1, fails) when a prerequisite is missing.
func require(t *testing.T, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("BANGER_E2E") == "1" {
		t.Fatalf("missing prerequisite: %s", why)
	}
	t.Skipf("skipping: %s (set BANGER_E2E=1 to make this a failure)", why)
}

func requireBase(t *testing.T) {
	t.Helper()
	require(t, os.Geteuid() == 0, "end-to-end tests need root (network namespaces, bridges, taps)")
	_, err := exec.LookPath("ip")
	require(t, err == nil, "iproute2 (ip) not installed")
	require(t, binDir != "", "binaries were not built")
}

// Env is one isolated banger installation: daemons, directories and a
// network namespace of its own.
type Env struct {
	t      *testing.T
	NS     string
	Root   string
	Layout paths.Layout
	Home   string // HOME of the CLI user (root) in this env
	Owner  *user.User
	cancel context.CancelFunc
	done   chan error
	Log    *bytes.Buffer
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// ensureOwner creates the unprivileged owner account once per machine.
func ensureOwner(t *testing.T) *user.User {
	t.Helper()
	if u, err := user.Lookup(ownerName); err == nil {
		return u
	}
	home := "/var/lib/" + ownerName
	out, err := exec.Command("useradd", "--system", "--create-home", "--home-dir", home, "--shell", "/usr/sbin/nologin", ownerName).CombinedOutput()
	if err != nil {
		t.Fatalf("useradd %s: %v: %s", ownerName, err, out)
	}
	u, err := user.Lookup(ownerName)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// newEnv makes the namespace and directories; Start runs the daemons.
func newEnv(t *testing.T) *Env {
	t.Helper()
	requireBase(t)
	// Short root: unix socket paths must fit in 108 bytes.
	root, err := os.MkdirTemp("/tmp", "bge-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(root, 0o755)
	e := &Env{t: t, NS: "bge-" + randomHex(4), Root: root, Owner: ensureOwner(t), Log: &bytes.Buffer{}}
	e.Layout = paths.Layout{
		StateDir:   filepath.Join(root, "state"),
		CacheDir:   "/var/tmp/banger-e2e/cache", // shared: image builds reuse the apt cache
		RuntimeDir: filepath.Join(root, "run"),
		HelperDir:  filepath.Join(root, "run-root"),
		EtcDir:     filepath.Join(root, "etc"),
		LibDir:     binDir,
	}
	e.Home = filepath.Join(root, "home")
	os.MkdirAll(e.Home, 0o700)
	os.MkdirAll(e.Layout.EtcDir, 0o755)
	if out, err := exec.Command("ip", "netns", "add", e.NS).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	exec.Command("ip", "-n", e.NS, "link", "set", "lo", "up").Run()
	t.Cleanup(e.destroy)
	return e
}

// env is the environment of every banger process in this Env.
func (e *Env) env() []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + e.Home, "NO_COLOR=1", "LANG=C.UTF-8"}
	return append(env, e.Layout.Env()...)
}

// Start runs `banger system run` in the namespace and waits until both
// daemons answer.
func (e *Env) Start() {
	e.t.Helper()
	e.StartWith()
}

// StartWith is Start with extra environment for both daemons.
func (e *Env) StartWith(extraEnv ...string) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	// The helper stays in the host namespace (the first image build
	// downloads Debian packages) and makes the network in e.NS, where
	// bangerd and its VMs run.
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "banger"), "system", "run", "--owner", ownerName, "--bin-dir", binDir, "--netns", e.NS)
	cmd.Env = append(e.env(), extraEnv...)
	cmd.Stdout, cmd.Stderr = e.Log, e.Log
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.done = make(chan error, 1)
	go func() { e.done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", e.Layout.DaemonSocket()); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-e.done:
			e.t.Fatalf("banger system run exited early: %v\n%s", err, e.Log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("daemons did not come up in 30s\n%s", e.Log)
		}
	}
}

// Stop ends the daemons (VMs and host network state stay).
func (e *Env) Stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	<-e.done
	e.cancel = nil
}

func (e *Env) destroy() {
	// VMs outlive their daemons by design: delete them while the daemons
	// run, then kill any VMM of this env that is left (a test that died
	// half-way).
	if e.cancel != nil {
		if r := e.CLI("vm", "list", "--json"); r.Code == 0 {
			var vms []struct{ Name string }
			json.Unmarshal([]byte(r.Stdout), &vms)
			for _, v := range vms {
				e.CLI("vm", "delete", v.Name)
			}
		}
	}
	e.Stop()
	exec.Command("pkill", "-KILL", "-f", e.Root+"/").Run()
	e.Helper("--cleanup")
	exec.Command("ip", "netns", "del", e.NS).Run()
	if e.t.Failed() {
		e.t.Logf("daemon log:\n%s", e.Log)
	}
	os.RemoveAll(e.Root)
}

// Result is one finished command.
type Result struct {
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

// run executes argv inside the namespace with the env's environment, as
// uid (0 = root).
func (e *Env) run(uid int, argv ...string) Result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", e.NS}, argv...)...)
	cmd.Env = e.env()
	if uid != 0 {
		// ip netns exec needs root, so drop privileges after entering.
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", e.NS, "setpriv", fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups"}, argv...)...)
		cmd.Env = e.env()
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run %v: %v", argv, err)
	}
	return Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: code}
}

// CLI runs the banger CLI as root.
func (e *Env) CLI(args ...string) Result {
	e.t.Helper()
	return e.run(0, append([]string{filepath.Join(binDir, "banger")}, args...)...)
}

// CLIAs runs the banger CLI as another uid.
func (e *Env) CLIAs(uid int, args ...string) Result {
	e.t.Helper()
	return e.run(uid, append([]string{filepath.Join(binDir, "banger")}, args...)...)
}

// Helper runs bangerd-root with args (e.g. --cleanup) in the namespace.
func (e *Env) Helper(args ...string) Result {
	e.t.Helper()
	return e.run(0, append([]string{filepath.Join(binDir, "bangerd-root"), "--owner-uid", e.Owner.Uid}, args...)...)
}

// IP runs `ip` in the namespace and returns its output.
func (e *Env) IP(args ...string) string {
	e.t.Helper()
	out, _ := exec.Command("ip", append([]string{"-n", e.NS}, args...)...).CombinedOutput()
	return string(out)
}

func mustContain(t *testing.T, r Result, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(r.Stdout+r.Stderr, w) {
			t.Errorf("output lacks %q\n%s", w, r)
		}
	}
}
