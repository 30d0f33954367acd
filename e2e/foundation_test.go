package e2e

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/roothelper"
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

// The helper makes a bridge, a tap owned by the owner and NAT rules in the
// test's namespace; --cleanup leaves nothing of them.
func TestHelperNetworkAndCleanup(t *testing.T) {
	e := newEnv(t)
	e.Start()
	ctx := t.Context()
	hc := roothelper.NewClient(e.Layout.HelperSocket())

	if _, err := hc.EnsureBridge(ctx, "banger0"); err != nil {
		t.Fatal(err)
	}
	if out := e.IP("-4", "addr", "show", "banger0"); !strings.Contains(out, "172.16.0.1/24") {
		t.Errorf("bridge address missing:\n%s", out)
	}
	if _, err := hc.CreateTap(ctx, "bgtape2e1"); err != nil {
		t.Fatal(err)
	}
	if out := e.IP("-d", "link", "show", "bgtape2e1"); !strings.Contains(out, "master banger0") || !strings.Contains(out, "tap") {
		t.Errorf("tap not enslaved to the bridge:\n%s", out)
	}
	owner := e.run(0, "cat", "/sys/class/net/bgtape2e1/owner")
	if strings.TrimSpace(owner.Stdout) != e.Owner.Uid {
		t.Errorf("tap owner = %q, want the owner uid %s", owner.Stdout, e.Owner.Uid)
	}
	if _, err := hc.AddNAT(ctx, "bgtape2e1", netip.MustParseAddr("172.16.0.5")); err != nil {
		t.Fatal(err)
	}
	if nft := e.run(0, "nft", "list", "table", "ip", "banger"); !strings.Contains(nft.Stdout, "172.16.0.5") || !strings.Contains(nft.Stdout, "masquerade") {
		t.Errorf("NAT rules missing:\n%s", nft)
	}

	// Hostile input is refused before anything happens.
	for _, bad := range []func() error{
		func() error { _, err := hc.EnsureBridge(ctx, "eth0"); return err },
		func() error { _, err := hc.CreateTap(ctx, "../evil"); return err },
		func() error { _, err := hc.AddNAT(ctx, "bgtape2e1", netip.MustParseAddr("8.8.8.8")); return err },
	} {
		if err := bad(); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("hostile request: err = %v, want bad_request", err)
		}
	}

	e.Stop()
	if r := e.Helper("--cleanup"); r.Code != 0 {
		t.Fatalf("cleanup: %s", r)
	}
	if out := e.IP("link", "show"); strings.Contains(out, "banger0") || strings.Contains(out, "bgtap") {
		t.Errorf("cleanup left links behind:\n%s", out)
	}
	if nft := e.run(0, "nft", "list", "tables"); strings.Contains(nft.Stdout, "banger") {
		t.Errorf("cleanup left the nft table:\n%s", nft)
	}
}

// ssh-config --install then --uninstall leaves ~/.ssh/config byte for byte
// as it was (HOME is the env's own).
func TestSSHConfigRoundTrip(t *testing.T) {
	e := newEnv(t)
	e.Start()
	cfg := filepath.Join(e.Home, ".ssh", "config")
	os.MkdirAll(filepath.Dir(cfg), 0o700)
	before := []byte("Host build\n  HostName 10.1.2.3\n  User me\n# no trailing newline")
	os.WriteFile(cfg, before, 0o600)
	if r := e.CLI("ssh-config", "--install"); r.Code != 0 {
		t.Fatalf("install: %s", r)
	}
	mid, _ := os.ReadFile(cfg)
	if !strings.HasPrefix(string(mid), "# >>> banger >>>") || !strings.Contains(string(mid), "Include ") || !strings.Contains(string(mid), string(before)) {
		t.Errorf("after --install:\n%s", mid)
	}
	if r := e.CLI("ssh-config", "--install"); r.Code != 0 {
		t.Fatalf("second install: %s", r)
	}
	if again, _ := os.ReadFile(cfg); string(again) != string(mid) {
		t.Errorf("--install is not idempotent:\n%s", again)
	}
	if r := e.CLI("ssh-config", "--uninstall"); r.Code != 0 {
		t.Fatalf("uninstall: %s", r)
	}
	after, _ := os.ReadFile(cfg)
	if string(after) != string(before) {
		t.Errorf("~/.ssh/config changed:\nbefore %q\nafter  %q", before, after)
	}
}

// A [[file_sync]] entry whose symlink leaves the owner's home is refused
// with a clear message before anything is created.
func TestFileSyncRefusesEscapingSymlink(t *testing.T) {
	e := newEnv(t)
	link := filepath.Join(e.Owner.HomeDir, "bge-"+randomHex(4)+"-creds")
	if err := os.Symlink("/etc", link); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(link)
	os.WriteFile(filepath.Join(e.Layout.EtcDir, "config.toml"),
		[]byte("[[file_sync]]\nhost = \"~/"+filepath.Base(link)+"\"\nguest = \"~/creds\"\n"), 0o644)
	e.Start()
	r := e.CLI("vm", "create", "--no-start", "--name", "sync")
	if r.Code == 0 {
		t.Fatalf("vm create succeeded with an escaping file_sync symlink: %s", r)
	}
	mustContain(t, r, filepath.Base(link), "/etc", "outside your home")
	if l := e.CLI("vm", "list", "--json"); strings.TrimSpace(l.Stdout) != "[]" {
		t.Errorf("a VM was created: %s", l)
	}
}
