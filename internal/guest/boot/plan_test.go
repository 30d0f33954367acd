package boot

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPlanRoot(t *testing.T) {
	tests := []struct {
		name             string
		image, layer, wk string
		want             []string
	}{
		{
			name: "with work disk", image: "/dev/vda", layer: "/dev/vdb", wk: "/dev/vdc",
			want: []string{
				"/dev/vda on /image type ext4 flags 0x1 (noload)",
				"/dev/vdb on /layer type ext4 flags 0x0 ()",
				"overlay on /newroot type overlay flags 0x0 (lowerdir=/image,upperdir=/layer/upper,workdir=/layer/work)",
				"/layer/docker on /newroot/var/lib/docker type  flags 0x1000 ()",
				"/dev/vdc on /newroot/root type ext4 flags 0x0 ()",
			},
		},
		{
			name: "without work disk", image: "/dev/vdb", layer: "/dev/vda",
			want: []string{
				"/dev/vdb on /image type ext4 flags 0x1 (noload)",
				"/dev/vda on /layer type ext4 flags 0x0 ()",
				"overlay on /newroot type overlay flags 0x0 (lowerdir=/image,upperdir=/layer/upper,workdir=/layer/work)",
				"/layer/docker on /newroot/var/lib/docker type  flags 0x1000 ()",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := planRoot(tt.image, tt.layer, tt.wk)
			var got []string
			for _, m := range p.mounts {
				got = append(got, m.String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("mounts (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"/layer/upper", "/layer/work", "/layer/docker"}, p.layerDirs); diff != "" {
				t.Errorf("layer dirs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEarlyMounts(t *testing.T) {
	var got []string
	for _, m := range earlyMounts() {
		got = append(got, m.String())
	}
	want := []string{
		"proc on /proc type proc flags 0xe ()",
		"sysfs on /sys type sysfs flags 0xe ()",
		"devtmpfs on /dev type devtmpfs flags 0x2 (mode=0755)",
		"tmpfs on /run type tmpfs flags 0x6 (mode=0755,size=20%)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestAgentFiles(t *testing.T) {
	describe := func(files []agentFile) []string {
		var out []string
		for _, f := range files {
			if f.link != "" {
				out = append(out, f.path+" -> "+f.link)
			} else {
				out = append(out, f.path+" "+f.mode.String())
			}
		}
		return out
	}
	want := []string{
		"/run/banger/banger-agent -rwxr-xr-x",
		"/run/systemd/system/banger-agent.service -rw-r--r--",
		"/run/systemd/system/sysinit.target.wants/banger-agent.service -> ../banger-agent.service",
	}
	if diff := cmp.Diff(want, describe(agentFiles([]byte("bin"), true))); diff != "" {
		t.Errorf("with systemd (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want[:1], describe(agentFiles([]byte("bin"), false))); diff != "" {
		t.Errorf("without systemd (-want +got):\n%s", diff)
	}
}

// TestUnitVerifies runs systemd-analyze verify on the agent unit, with the
// unit's ExecStart pointing at a real executable.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("BANGER_E2E") == "1" {
			t.Fatal("systemd-analyze not found")
		}
		t.Skip("systemd-analyze not installed")
	}
	text := unitText("/bin/true")
	for _, want := range []string{"ExecStart=/bin/true\n", "Type=simple\n", "Restart=always\n", "DefaultDependencies=no\n", "WantedBy=sysinit.target\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	unit := filepath.Join(t.TempDir(), agentUnit)
	if err := os.WriteFile(unit, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), analyze, "verify", unit)
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("%v: %v\n%s", cmd.Args, err, out)
	}
}

func TestHostsFile(t *testing.T) {
	tests := []struct {
		name, old, want string
	}{
		{
			name: "debian default",
			old:  "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n\n::1 localhost ip6-localhost ip6-loopback\n",
			want: "127.0.0.1\tlocalhost\n\n::1 localhost ip6-localhost ip6-loopback\n127.0.1.1\tdev-box\n",
		},
		{
			name: "missing",
			want: "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tdev-box\n",
		},
		{
			name: "no trailing newline",
			old:  "127.0.0.1 localhost\n10.0.0.9 db",
			want: "127.0.0.1 localhost\n10.0.0.9 db\n127.0.1.1\tdev-box\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, string(hostsFile([]byte(tt.old), "dev-box"))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestResolvConf(t *testing.T) {
	got := string(resolvConf([]netip.Addr{netip.MustParseAddr("172.30.0.1"), netip.MustParseAddr("9.9.9.9")}))
	want := "# Written by banger at boot.\nnameserver 172.30.0.1\nnameserver 9.9.9.9\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// imageTree makes a directory shaped like an image's root.
func imageTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, v := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasPrefix(v, "->"):
			err = os.Symlink(strings.TrimPrefix(v, "->"), full)
		case v == "dir":
			err = os.MkdirAll(full, 0o755)
		case v == "exe":
			err = os.WriteFile(full, []byte("\x7fELF"), 0o755)
		default:
			err = os.WriteFile(full, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestResolveIn(t *testing.T) {
	root := imageTree(t, map[string]string{
		"usr/lib/systemd/systemd": "exe",
		"lib":                     "->usr/lib",
		"usr/sbin/init":           "->../lib/systemd/systemd",
		"sbin":                    "->usr/sbin",
		"etc/resolv.conf":         "->/run/systemd/resolve/stub-resolv.conf",
		"var/lib":                 "->/data/../../../srv",
		"loop/a":                  "->b",
		"loop/b":                  "->a",
	})
	tests := []struct {
		in, want, err string
	}{
		{in: "/sbin/init", want: "/usr/lib/systemd/systemd"},
		{in: "/lib/systemd/systemd", want: "/usr/lib/systemd/systemd"},
		{in: "/etc/resolv.conf", want: "/run/systemd/resolve/stub-resolv.conf"},
		// Absolute links and ".." stay inside the root.
		{in: "/var/lib/docker", want: "/srv/docker"},
		{in: "/../../etc", want: "/etc"},
		{in: "/new/dir/x", want: "/new/dir/x"},
		{in: "/loop/a", err: "too many levels"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := resolveIn(root, tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestChooseInit(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		want    string
		wantSD  bool
		request string
		err     string
	}{
		{name: "debian usrmerge systemd", files: map[string]string{
			"usr/lib/systemd/systemd": "exe", "lib": "->usr/lib", "sbin": "->usr/sbin", "usr/sbin/init": "->/lib/systemd/systemd",
		}, want: "/sbin/init", wantSD: true},
		{name: "systemd without /sbin/init", files: map[string]string{"lib/systemd/systemd": "exe"}, want: "/lib/systemd/systemd", wantSD: true},
		{name: "busybox init", files: map[string]string{"bin/busybox": "exe", "sbin/init": "->../bin/busybox"}, want: "/sbin/init"},
		{name: "shell only", files: map[string]string{"bin/sh": "exe", "sbin/init": "not executable"}, want: "/bin/sh"},
		{name: "requested", files: map[string]string{"usr/bin/tini": "exe", "lib/systemd/systemd": "exe"}, request: "/usr/bin/tini", want: "/usr/bin/tini"},
		{name: "requested missing", files: map[string]string{"lib/systemd/systemd": "exe"}, request: "/usr/bin/tini", err: "none of /usr/bin/tini"},
		{name: "nothing", files: map[string]string{"etc": "dir"}, err: "no init in the image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, sd, err := chooseInit(imageTree(t, tt.files), tt.request)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want || sd != tt.wantSD {
				t.Errorf("got %s systemd=%v, want %s systemd=%v", got, sd, tt.want, tt.wantSD)
			}
		})
	}
}

func TestWaitDisks(t *testing.T) {
	sys := imageTree(t, map[string]string{
		"vda/serial": "banger-layer\n",
		"vdb/serial": "banger-image",
		"vdc/serial": "",
		"vdd/serial": "dup",
		"vde/serial": "dup",
		"sda/serial": "banger-work",
	})
	dev := imageTree(t, map[string]string{"vda": "", "vdb": "", "vdc": "", "vdd": "", "vde": ""})
	tests := []struct {
		name  string
		disks []Disk
		want  []string
		err   string
	}{
		{name: "by serial", disks: []Disk{{Serial: "banger-image"}, {Serial: "banger-layer"}}, want: []string{"vdb", "vda"}},
		{name: "by name", disks: []Disk{{Name: "vdc"}, {Name: "vda"}}, want: []string{"vdc", "vda"}},
		{name: "missing serial", disks: []Disk{{Serial: "banger-image"}, {Serial: "banger-work"}}, err: "wait for disk serial:banger-work"},
		{name: "missing name", disks: []Disk{{Name: "vdf"}}, err: "present: vda serial banger-layer, vdb serial banger-image, vdc,"},
		{name: "duplicate serial", disks: []Disk{{Serial: "dup"}}, err: "both vdd and vde"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			got, err := waitDisks(ctx, sys, dev, tt.disks)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, w := range tt.want {
				want = append(want, filepath.Join(dev, w))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	t.Run("disk appears late", func(t *testing.T) {
		go func() {
			time.Sleep(50 * time.Millisecond)
			os.MkdirAll(filepath.Join(sys, "vdf"), 0o755)
			os.WriteFile(filepath.Join(sys, "vdf", "serial"), []byte("late"), 0o644)
			time.Sleep(50 * time.Millisecond)
			os.WriteFile(filepath.Join(dev, "vdf"), nil, 0o644)
		}()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		got, err := waitDisks(ctx, sys, dev, []Disk{{Serial: "late"}})
		if err != nil || got[0] != filepath.Join(dev, "vdf") {
			t.Fatalf("got %v, %v", got, err)
		}
	})
}
