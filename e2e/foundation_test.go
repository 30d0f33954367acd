package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// One environment serves the read-only checks; tests that change the host
// network or the daemons' lifecycle make their own.
func TestFoundation(t *testing.T) {
	e := newEnv(t)
	e.Start()

	t.Run("version shows CLI and daemon", func(t *testing.T) {
		r := e.CLI("version")
		if r.Code != 0 {
			t.Fatal(r)
		}
		mustContain(t, r, "banger ", "bangerd ")
		if strings.Contains(r.Stdout, "not reachable") || strings.Contains(r.Stdout, "differ") {
			t.Errorf("daemon should be reachable and equal in version:\n%s", r)
		}
		var v struct {
			CLI    struct{ Version string } `json:"cli"`
			Daemon struct{ Version string } `json:"daemon"`
		}
		r = e.CLI("version", "--json")
		if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil || v.CLI.Version == "" || v.CLI.Version != v.Daemon.Version {
			t.Errorf("version --json = %+v (%v)\n%s", v, err, r)
		}
	})

	t.Run("doctor reports and names the backend", func(t *testing.T) {
		r := e.CLI("doctor")
		if r.Code != 0 && r.Code != 1 {
			t.Fatalf("doctor crashed:\n%s", r)
		}
		mustContain(t, r, "/dev/kvm", "backend", "bangerd", "bangerd-root", "vm defaults", "vcpu", "memory_mib", "disk_size")
		var rep struct {
			Checks []struct {
				Name, Status, Detail string
			}
			Hypervisor struct{ Backend, Accel, Reason string }
			Defaults   []struct{ Key, Value, Source string } `json:"vm_defaults"`
		}
		j := e.CLI("doctor", "--json")
		if err := json.Unmarshal([]byte(j.Stdout), &rep); err != nil {
			t.Fatalf("doctor --json: %v\n%s", err, j)
		}
		if rep.Hypervisor.Accel == "tcg" && !strings.Contains(r.Stdout, "software emulation") {
			t.Errorf("without usable KVM doctor must say QEMU software emulation will be used:\n%s", r)
		}
		for _, c := range rep.Checks {
			if (c.Name == "bangerd" || c.Name == "bangerd-root") && c.Status != "pass" {
				t.Errorf("%s check = %s: %s", c.Name, c.Status, c.Detail)
			}
		}
		if len(rep.Defaults) != 3 {
			t.Errorf("want 3 vm defaults with provenance, got %+v", rep.Defaults)
		}
		for _, d := range rep.Defaults {
			if d.Source == "" {
				t.Errorf("default %s has no provenance", d.Key)
			}
		}
	})

	t.Run("another uid is refused", func(t *testing.T) {
		r := e.CLIAs(65534, "system", "status")
		if r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "permission denied") {
			t.Errorf("nobody reached the daemon through a 0600 socket:\n%s", r)
		}
		// Open the socket's mode so only SO_PEERCRED stands in the way.
		sock := e.Layout.DaemonSocket()
		os.Chmod(e.Layout.RuntimeDir, 0o711)
		os.Chmod(sock, 0o666)
		defer os.Chmod(sock, 0o600)
		defer os.Chmod(e.Layout.RuntimeDir, 0o700)
		r = e.CLIAs(65534, "system", "status")
		if r.Code == 0 || !strings.Contains(r.Stdout+r.Stderr, "uid 65534 may not use this socket") {
			t.Errorf("want a peer-credential refusal for uid 65534:\n%s", r)
		}
	})

	t.Run("bad config key gives file and line", func(t *testing.T) {
		cfg := filepath.Join(e.Layout.EtcDir, "config.toml")
		os.WriteFile(cfg, []byte("log_level = \"info\"\n[vm_defaults]\nvcpus = 2\n"), 0o644)
		defer os.Remove(cfg)
		r := e.CLI("doctor")
		if r.Code != 1 {
			t.Errorf("doctor must fail on a broken config:\n%s", r)
		}
		mustContain(t, r, cfg+":3:", "vm_defaults.vcpus")
	})

	t.Run("completion names are silent when the daemon is down", func(t *testing.T) {
		r := e.CLI("completion", "bash")
		if r.Code != 0 || !strings.Contains(r.Stdout, "__start_banger") {
			t.Fatalf("completion bash:\n%s", r)
		}
	})
}
