package doctor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger/banger/internal/client"
	"github.com/banger/banger/internal/host"
	"github.com/banger/banger/internal/paths"
)

func fakeEnv(t *testing.T, kvm host.KVM, missing ...string) Env {
	dir := t.TempDir()
	l := paths.Layout{StateDir: dir, RuntimeDir: dir, HelperDir: dir, EtcDir: dir}
	return Env{
		Layout: l, Home: dir, Client: client.New(filepath.Join(dir, "none.sock")),
		Probe: &Probes{
			KVM: func(context.Context) host.KVM { return kvm },
			Look: func(_ context.Context, name, _ string) host.Tool {
				for _, m := range missing {
					if m == name {
						return host.Tool{Name: name, Err: errors.New("not found")}
					}
				}
				return host.Tool{Name: name, Path: "/usr/bin/" + name, Version: "1.0"}
			},
			Arch:    func() string { return "amd64 (x86_64)" },
			Systemd: func() bool { return false },
		},
	}
}

func find(r Report, name string) Check {
	for _, c := range r.Checks {
		if c.Name == name {
			return c
		}
	}
	return Check{}
}

func TestNoKVMMeansSoftwareEmulation(t *testing.T) {
	r := Run(t.Context(), fakeEnv(t, host.KVM{Present: true, Reason: "did not run a test guest"}, "firecracker"))
	if r.Hypervisor.Backend != "qemu" || r.Hypervisor.Accel != "tcg" {
		t.Fatalf("choice = %+v, want qemu/tcg", r.Hypervisor)
	}
	if c := find(r, "/dev/kvm"); c.Status != Warn || !strings.Contains(c.Fix, "software emulation") {
		t.Errorf("/dev/kvm check = %+v", c)
	}
	if len(r.Defaults) != 3 {
		t.Errorf("defaults = %+v", r.Defaults)
	}
}

func TestMissingToolsAndDaemonBlock(t *testing.T) {
	r := Run(t.Context(), fakeEnv(t, host.KVM{}, "mkfs.ext4", "qemu-system-x86_64", "firecracker"))
	if !r.Blocking() {
		t.Fatal("missing mkfs.ext4, no hypervisor and no daemon must block")
	}
	for _, name := range []string{"mkfs.ext4", "backend", "bangerd"} {
		c := find(r, name)
		if c.Status != Fail || c.Fix == "" {
			t.Errorf("%s = %+v, want a failure with a fix", name, c)
		}
	}
}

func TestBrokenConfigFailsWithFileLine(t *testing.T) {
	env := fakeEnv(t, host.KVM{})
	cfg := filepath.Join(env.Layout.EtcDir, "config.toml")
	os.WriteFile(cfg, []byte("hypervisor = \"vmware\"\n"), 0o644)
	r := Run(t.Context(), env)
	c := find(r, "config files")
	if c.Status != Fail || !strings.Contains(c.Detail, cfg+":1: hypervisor") {
		t.Errorf("config check = %+v", c)
	}
}
