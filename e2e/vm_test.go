package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireVM checks what booting real guests needs.
func requireVM(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"qemu-system-x86_64", "debootstrap", "mkfs.ext4", "resize2fs", "e2fsck", "npm"} {
		_, err := exec.LookPath(tool)
		require(t, err == nil, tool+" not installed")
	}
}

// smallVM are the sizes every test VM gets: TCG guests are slow, keep them
// lean.
var smallVM = []string{"--vcpu", "2", "--memory", "1024", "--disk-size", "2G"}

func (e *Env) vmJSON(name string) map[string]any {
	e.t.Helper()
	r := e.CLI("vm", "show", name, "--json")
	var v map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil {
		e.t.Fatalf("vm show %s: %v\n%s", name, err, r)
	}
	return v
}

// TestVMLifecycle boots the golden image under QEMU and walks a VM through
// its life. The cases share VMs because every boot costs ~20 s here.
func TestVMLifecycle(t *testing.T) {
	requireBase(t)
	requireVM(t)
	e := newEnv(t)
	e.Start()

	start := time.Now()
	r := e.CLI(append([]string{"vm", "create", "--name", "alpha"}, smallVM...)...)
	if r.Code != 0 {
		t.Fatalf("vm create alpha (with the first image build): %s", r)
	}
	t.Logf("image build + create + boot: %s", time.Since(start).Round(time.Second))
	mustContain(t, r, "spec: 2 vcpu | 1024 MiB | 2G disk")

	t.Run("exec runs the cloud kernel", func(t *testing.T) {
		r := e.CLI("vm", "exec", "alpha", "--", "uname", "-r")
		if r.Code != 0 || !strings.Contains(r.Stdout, "cloud-amd64") {
			t.Errorf("uname -r: %s", r)
		}
	})
	t.Run("exit code comes back", func(t *testing.T) {
		if r := e.CLI("vm", "exec", "alpha", "--", "sh", "-c", "echo out; echo err >&2; exit 42"); r.Code != 42 || r.Stdout != "out\n" || r.Stderr != "err\n" {
			t.Errorf("want exit 42 with separate streams: %s", r)
		}
		if r := e.CLI("vm", "exec", "alpha", "--", "no-such-command"); r.Code != 127 {
			t.Errorf("missing command: want 127: %s", r)
		}
	})
	t.Run("stdin is piped through", func(t *testing.T) {
		cmd := exec.Command("ip", "netns", "exec", e.NS, filepath.Join(binDir, "banger"), "vm", "exec", "alpha", "--", "sha256sum")
		cmd.Env = e.env()
		input := strings.Repeat("banger\n", 10000)
		cmd.Stdin = strings.NewReader(input)
		out, err := cmd.Output()
		host := exec.Command("sha256sum")
		host.Stdin = strings.NewReader(input)
		want, _ := host.Output()
		if err != nil || string(out) != string(want) {
			t.Errorf("stdin through the guest: got %q (%v), want %q", out, err, want)
		}
	})
	t.Run("systemd reaches multi-user with sshd", func(t *testing.T) {
		r := e.CLI("vm", "exec", "alpha", "--", "sh", "-c", "systemctl is-system-running --wait; systemctl is-active multi-user.target ssh")
		if !strings.Contains(r.Stdout, "active\nactive") {
			t.Errorf("systemd state: %s", r)
		}
	})
	t.Run("docker works", func(t *testing.T) {
		r := e.CLI("vm", "exec", "alpha", "--", "docker", "info", "--format", "{{.Driver}} {{.DockerRootDir}}")
		if r.Code != 0 || !strings.Contains(r.Stdout, "overlay2 /var/lib/docker") {
			t.Errorf("docker info: %s", r)
		}
	})
	t.Run("writes survive stop and start", func(t *testing.T) {
		if r := e.CLI("vm", "exec", "alpha", "--", "sh", "-c", "echo kept > /root/kept.txt && echo sys > /etc/banger-test"); r.Code != 0 {
			t.Fatal(r)
		}
		if r := e.CLI("vm", "stop", "alpha"); r.Code != 0 || !strings.Contains(r.Stdout, "stopped") {
			t.Fatalf("stop: %s", r)
		}
		if st := e.vmJSON("alpha")["state"]; st != "stopped" {
			t.Errorf("state after stop = %v", st)
		}
		if r := e.CLI("vm", "start", "alpha"); r.Code != 0 {
			t.Fatalf("start: %s", r)
		}
		r := e.CLI("vm", "exec", "alpha", "--", "cat", "/root/kept.txt", "/etc/banger-test")
		if r.Stdout != "kept\nsys\n" {
			t.Errorf("after restart: %s", r)
		}
	})
	t.Run("two VMs from one image are isolated", func(t *testing.T) {
		if r := e.CLI(append([]string{"vm", "create", "--name", "beta"}, smallVM...)...); r.Code != 0 {
			t.Fatalf("create beta: %s", r)
		}
		if r := e.CLI("vm", "exec", "beta", "--", "sh", "-c", "test ! -e /root/kept.txt && test ! -e /etc/banger-test && hostname"); r.Code != 0 || r.Stdout != "beta\n" {
			t.Errorf("beta sees alpha's writes or has the wrong hostname: %s", r)
		}
		list := e.CLI("vm", "list")
		mustContain(t, list, "alpha", "beta", "running")
	})
	t.Run("delete leaves nothing behind", func(t *testing.T) {
		v := e.vmJSON("beta")
		id, dir := v["id"].(string), v["dir"].(string)
		if r := e.CLI("vm", "delete", "beta"); r.Code != 0 {
			t.Fatalf("delete: %s", r)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("VM dir %s still there", dir)
		}
		if _, err := os.Stat(filepath.Join(e.Layout.RuntimeDir, "vms", id)); !os.IsNotExist(err) {
			t.Errorf("runtime dir of %s still there", id)
		}
		if out, _ := exec.Command("pgrep", "-f", "vms/"+id+"/").Output(); len(out) > 0 {
			t.Errorf("VMM process still running: %s", out)
		}
		if out := e.IP("link", "show"); strings.Contains(out, "bgtap"+id) {
			t.Errorf("tap still there:\n%s", out)
		}
		if r := e.CLI("vm", "show", "beta"); r.Code == 0 {
			t.Errorf("beta still listed: %s", r)
		}
	})
	t.Run("daemon restart adopts the running VM", func(t *testing.T) {
		pid := e.vmJSON("alpha")["pid"]
		e.Stop()
		e.Start()
		v := e.vmJSON("alpha")
		if v["state"] != "running" || v["pid"] != pid {
			t.Fatalf("after daemon restart: state %v pid %v (was %v)", v["state"], v["pid"], pid)
		}
		if r := e.CLI("vm", "exec", "alpha", "--", "true"); r.Code != 0 {
			t.Errorf("exec after adoption: %s", r)
		}
	})
	t.Run("a boot that does not finish is reported with the console tail", func(t *testing.T) {
		cfg := filepath.Join(e.Layout.EtcDir, "config.toml")
		os.WriteFile(cfg, []byte("boot_timeout = \"5s\"\n"), 0o644)
		e.Stop()
		e.Start()
		defer func() {
			os.Remove(cfg)
			e.Stop()
			e.Start()
		}()
		r := e.CLI(append([]string{"vm", "create", "--name", "slow"}, smallVM...)...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "did not come up within 5s") || !strings.Contains(r.Stderr, "console tail: [") {
			t.Errorf("want a timeout with the console tail: %s", r)
		}
		v := e.vmJSON("slow")
		if v["state"] != "error" {
			t.Errorf("state = %v, want error", v["state"])
		}
		if out, _ := exec.Command("pgrep", "-f", "vms/"+v["id"].(string)+"/").Output(); len(out) > 0 {
			t.Errorf("timed-out VMM still running: %s", out)
		}
		e.CLI("vm", "delete", "slow")
	})
	if r := e.CLI("vm", "delete", "alpha"); r.Code != 0 {
		t.Errorf("delete alpha: %s", r)
	}
}
