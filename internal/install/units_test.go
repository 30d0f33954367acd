package install

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger/banger/internal/paths"
)

func TestUnitsCarryTheLifecycleLessons(t *testing.T) {
	u, err := Units(UnitOptions{BinDir: "/usr/local/bin", Owner: Owner{User: "alice", UID: 1000, GID: 1000}, Layout: paths.Default(), ExtraGroups: []string{"kvm"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{
		paths.HelperUnit: {"KillMode=process", "SendSIGKILL=no", "RuntimeDirectoryPreserve=yes", "CapabilityBoundingSet=CAP_CHOWN", "ExecStart=/usr/local/bin/bangerd-root"},
		paths.DaemonUnit: {"User=alice", "KillMode=process", "SendSIGKILL=no", "ProtectHome=read-only", "RuntimeDirectoryPreserve=yes", "CapabilityBoundingSet=\n", "SupplementaryGroups=kvm", "ExecStart=/usr/local/bin/bangerd --system"},
	} {
		for _, w := range want {
			if !strings.Contains(u[name], w) {
				t.Errorf("%s lacks %q", name, w)
			}
		}
	}
}

// systemd-analyze verify parses the units as systemd would; it exits 0 on
// mere warnings, so any complaint about our files fails the test too.
func TestSystemdAnalyzeVerifyAcceptsUnits(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("BANGER_E2E") == "1" {
			t.Fatal("systemd-analyze not found (apt-get install systemd)")
		}
		t.Skip("systemd-analyze not found")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	for _, b := range []string{"bangerd", "bangerd-root", "banger"} {
		os.WriteFile(filepath.Join(bin, b), []byte("#!/bin/sh\n"), 0o755)
	}
	u, err := Units(UnitOptions{BinDir: bin, Owner: Owner{User: "daemon", UID: 1, GID: 1}, Layout: paths.Default()})
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for name, text := range u {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o644)
		files = append(files, p)
	}
	out, err := exec.Command(sa, append([]string{"verify"}, files...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, dir) {
			t.Errorf("systemd-analyze complains: %s", line)
		}
	}
}
