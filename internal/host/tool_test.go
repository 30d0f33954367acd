package host

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const fcOutput = "Firecracker v1.16.1\n\nSupported snapshot data format versions: v1.0.0, v2.0.0, v3.0.0, v4.0.0, v5.0.0, v6.0.0, v7.0.0\n"

func TestFirecrackerVersion(t *testing.T) {
	tests := []struct {
		name, output, want string
	}{
		{"current", fcOutput, "1.16.1"},
		{"one line", "Firecracker v1.7.0\n", "1.7.0"},
		{"no newline", "Firecracker v1.4.1", "1.4.1"},
		{"dev build", "Firecracker v1.8.0-dev\n\nSupported snapshot data format versions: v1.0.0\n", "1.8.0-dev"},
		{"warning first", "2024-01-01T00:00:00 [anonymous-instance:main] warning: something\nFirecracker v1.10.1\n", "1.10.1"},
		{"jailer", "Jailer v1.16.1\n", "1.16.1"},
		{"snapshot versions only", "Supported snapshot data format versions: v1.0.0\n", ""},
		{"qemu", "QEMU emulator version 7.2.19\n", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FirecrackerVersion(tt.output); got != tt.want {
				t.Errorf("FirecrackerVersion(%q) = %q, want %q", tt.output, got, tt.want)
			}
		})
	}
}

func TestQEMUVersion(t *testing.T) {
	tests := []struct {
		name, output, want string
	}{
		{"debian bookworm", "QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n", "7.2.19"},
		{"ubuntu noble", "QEMU emulator version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1.4)\nCopyright (c) 2003-2023 Fabrice Bellard and the QEMU Project developers\n", "8.2.2"},
		{"no space before paren", "QEMU emulator version 2.11.1(Debian 1:2.11+dfsg-1ubuntu7.41)\n", "2.11.1"},
		{"upstream build", "QEMU emulator version 9.1.0\nCopyright (c) 2003-2024 Fabrice Bellard and the QEMU Project developers\n", "9.1.0"},
		{"rhel", "QEMU emulator version 6.2.0 (qemu-kvm-6.2.0-11.el8)\n", "6.2.0"},
		{"two components", "QEMU emulator version 4.2 (Debian 1:4.2-3ubuntu6)\n", "4.2"},
		{"qemu-img", "qemu-img version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n", "7.2.19"},
		{"firecracker", fcOutput, ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := QEMUVersion(tt.output); got != tt.want {
				t.Errorf("QEMUVersion(%q) = %q, want %q", tt.output, got, tt.want)
			}
		})
	}
}

func TestAtLeast(t *testing.T) {
	tests := []struct {
		v, min string
		want   bool
	}{
		{"1.16.1", "1.8.0", true},
		{"1.8.0", "1.8.0", true},
		{"1.7.9", "1.8.0", false},
		{"1.10.0", "1.9.0", true}, // numeric, not lexical
		{"2.0.0", "1.99.99", true},
		{"v1.8.0", "1.8.0", true},
		{"1.8", "1.8.0", true},
		{"8.2", "7.2.19", true},
		{"1.8.0-dev", "1.8.0", false}, // a pre-release precedes its release
		{"1.8.0", "1.8.0-dev", true},
		{"1.8.1-dev", "1.8.0", true},
		{"1.8.0+build5", "1.8.0", true},
		{"", "1.8.0", false},
		{"garbage", "0.0.0", false},
		{"1.2.3.4", "1.0.0", false},
		{"1.8.0", "junk", false},
	}
	for _, tt := range tests {
		if got := AtLeast(tt.v, tt.min); got != tt.want {
			t.Errorf("AtLeast(%q, %q) = %v, want %v", tt.v, tt.min, got, tt.want)
		}
	}
}

func TestLook(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pathDir, sbinDir, otherDir := t.TempDir(), t.TempDir(), t.TempDir()
	fake := func(dir, name string) string {
		p := filepath.Join(dir, name)
		if err := os.Symlink(self, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fc := fake(otherDir, "firecracker")
	qemu := fake(pathDir, "qemu-system-x86_64")
	mkfs := fake(sbinDir, "mkfs.ext4")
	jailer := fake(otherDir, "jailer")
	notExec := filepath.Join(otherDir, "plain")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", pathDir)
	t.Setenv("BANGER_FAKE_TOOL", "1")

	type result struct{ Name, Path, Version, Err string }
	tests := []struct {
		name, tool, override, output, exit string
		want                               result
		notFound                           bool
	}{
		{name: "override", tool: "firecracker", override: fc, output: fcOutput,
			want: result{Name: "firecracker", Path: fc, Version: "1.16.1"}},
		{name: "relative override", tool: "firecracker", override: "bin/firecracker",
			want: result{Name: "firecracker", Err: `look firecracker: "bin/firecracker" is not an absolute path`}},
		{name: "missing override", tool: "firecracker", override: filepath.Join(otherDir, "nope"),
			want: result{Name: "firecracker", Err: "look firecracker: stat " + filepath.Join(otherDir, "nope") + ": no such file or directory"}},
		{name: "override not executable", tool: "firecracker", override: notExec,
			want: result{Name: "firecracker", Err: "look firecracker: " + notExec + " is not an executable file"}},
		{name: "PATH", tool: "qemu-system-x86_64", output: "QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)\n",
			want: result{Name: "qemu-system-x86_64", Path: qemu, Version: "7.2.19"}},
		{name: "sbin, no version needed", tool: "mkfs.ext4", exit: "3",
			want: result{Name: "mkfs.ext4", Path: mkfs}},
		{name: "not found", tool: "firecracker", notFound: true,
			want: result{Name: "firecracker", Err: "look firecracker: executable file not found in $PATH (searched PATH and " + sbinDir + ")"}},
		{name: "version fails", tool: "jailer", override: jailer, output: "jailer: bad things\n", exit: "2",
			want: result{Name: "jailer", Path: jailer, Err: jailer + " --version: exit status 2: jailer: bad things"}},
		{name: "no version in output", tool: "firecracker", override: fc, output: "hello\n",
			want: result{Name: "firecracker", Path: fc, Err: fc + ` --version: no version in "hello"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("BANGER_FAKE_OUTPUT", tt.output)
			t.Setenv("BANGER_FAKE_EXIT", tt.exit)
			tool := look(t.Context(), tt.tool, tt.override, []string{sbinDir})
			got := result{Name: tool.Name, Path: tool.Path, Version: tool.Version}
			if tool.Err != nil {
				got.Err = tool.Err.Error()
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if tt.notFound && !errors.Is(tool.Err, exec.ErrNotFound) {
				t.Errorf("error %v does not wrap exec.ErrNotFound", tool.Err)
			}
		})
	}
}
