package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/banger/banger/internal/host"
	"github.com/banger/banger/internal/vmm/firecracker/firecrackertest"
)

// init makes the test binary the strict fake firecracker when it runs as
// one (before TestMain, which belongs to the whole package): told so by
// the environment, or run under that name (firecracker --version from a
// process without the fake's environment).
func init() {
	if os.Getenv(firecrackertest.EnvConfig) != "" || filepath.Base(os.Args[0]) == "firecracker" {
		os.Exit(firecrackertest.Main())
	}
}

// fakeFC is the fake firecracker of one Env: the test binary copied next
// to the other binaries, its config and its records.
type fakeFC struct {
	bin, config, dir string
	cfg              firecrackertest.Config
}

func (e *Env) fakeFirecracker(t *testing.T) *fakeFC {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFC{bin: filepath.Join(binDir, "firecracker"), config: filepath.Join(e.Root, "fake-firecracker.json"), dir: filepath.Join(e.Root, "fc-records")}
	if _, err := os.Stat(f.bin); err != nil {
		in, err := os.Open(self)
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.OpenFile(f.bin, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
		if err == nil {
			_, err = io.Copy(out, in)
			out.Close()
		}
		in.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	// The fake runs as the owner: it appends its records here.
	if err := os.Mkdir(f.dir, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(f.dir, 0o777)
	f.cfg = firecrackertest.Config{Records: f.dir, Agent: filepath.Join(binDir, "banger-agent"), OpenTaps: true}
	f.write(t)
	cfg := fmt.Sprintf("hypervisor = \"firecracker\"\nfirecracker_bin = %q\n", f.bin)
	if err := os.WriteFile(filepath.Join(e.Layout.EtcDir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// env is what makes banger use the fake on a host without KVM.
func (f *fakeFC) env() []string {
	return []string{host.EnvFirecrackerWithoutKVM + "=1", firecrackertest.EnvConfig + "=" + f.config}
}

func (f *fakeFC) write(t *testing.T) {
	t.Helper()
	if err := firecrackertest.WriteConfig(f.config, f.cfg); err != nil {
		t.Fatal(err)
	}
}

// startFC is Start with the daemons told to use the fake.
func (e *Env) startFC(f *fakeFC) {
	e.t.Helper()
	e.StartWith(f.env()...)
}

// records are the fake's lines for VM id from line from on, with the env's
// root written $ROOT and without vsock lines (their number is timing).
func (f *fakeFC) records(t *testing.T, id string, from int) []string {
	t.Helper()
	lines, err := firecrackertest.Records(f.dir, id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range lines[min(from, len(lines)):] {
		if !strings.HasPrefix(l, "vsock:") {
			out = append(out, l)
		}
	}
	return out
}

// count is how many lines the fake has recorded for id.
func (f *fakeFC) count(t *testing.T, id string) int {
	t.Helper()
	lines, err := firecrackertest.Records(f.dir, id)
	if err != nil {
		return 0
	}
	return len(lines)
}

var (
	initrdKey = regexp.MustCompile(`initrd-[0-9a-f]{16}\.img`)
	bootArgs  = regexp.MustCompile(`"boot_args":"([^"]*)"`)
)

// normalize replaces what differs between runs, after checking the boot
// arguments carry what a Firecracker guest needs.
func normalize(t *testing.T, root string, lines []string) []string {
	t.Helper()
	out := make([]string, len(lines))
	for i, l := range lines {
		if m := bootArgs.FindStringSubmatch(l); m != nil {
			for _, want := range []string{"console=ttyS0", "banger.image=vda banger.layer=vdb banger.work=vdc", "banger.agent=vsock:1024", "reboot=k pci=off"} {
				if !strings.Contains(m[1], want) {
					t.Errorf("boot_args %q lack %q", m[1], want)
				}
			}
			l = bootArgs.ReplaceAllString(l, `"boot_args":"$$ARGS"`)
		}
		l = initrdKey.ReplaceAllString(l, "initrd-$$KEY.img")
		out[i] = strings.ReplaceAll(l, root, "$ROOT")
	}
	return out
}

// bootSequence is what a start of v sends, in order.
func bootSequence(v map[string]any) []string {
	id, name := v["id"].(string), v["name"].(string)
	run := "$ROOT/run/vms/" + id
	kernel := "$ROOT/state/kernels/" + v["kernel"].(string)
	vm := "$ROOT/state/vms/" + name
	return []string{
		"start --api-sock " + run + "/fc.sock --id " + id,
		"GET /version -> 200",
		`PUT /logger {"level":"Info","log_path":"` + run + `/firecracker.log","show_level":true} -> 204`,
		`PUT /metrics {"metrics_path":"` + run + `/firecracker.metrics"} -> 204`,
		`PUT /machine-config {"mem_size_mib":1024,"vcpu_count":2} -> 204`,
		`PUT /boot-source {"boot_args":"$ARGS","initrd_path":"` + kernel + `/initrd-$KEY.img","kernel_image_path":"` + kernel + `/vmlinux"} -> 204`,
		`PUT /drives/banger_image {"drive_id":"banger_image","is_read_only":true,"is_root_device":false,"path_on_host":"$ROOT/state/images/` + v["image"].(string) + `/rootfs.ext4"} -> 204`,
		`PUT /drives/banger_layer {"cache_type":"Writeback","drive_id":"banger_layer","is_read_only":false,"is_root_device":false,"path_on_host":"` + vm + `/layer.ext4"} -> 204`,
		`PUT /drives/banger_work {"cache_type":"Writeback","drive_id":"banger_work","is_read_only":false,"is_root_device":false,"path_on_host":"` + vm + `/work.ext4"} -> 204`,
		`PUT /network-interfaces/eth0 {"guest_mac":"` + v["mac"].(string) + `","host_dev_name":"` + v["tap"].(string) + `","iface_id":"eth0"} -> 204`,
		`PUT /vsock {"guest_cid":3,"uds_path":"` + run + `/agent.sock"} -> 204`,
		`PUT /actions {"action_type":"InstanceStart"} -> 204`,
		"GET / -> 200",
	}
}

// running reports whether a process's command line contains s.
func running(s string) bool {
	out, _ := exec.Command("pgrep", "-f", regexp.QuoteMeta(s)).Output()
	return len(out) > 0
}

// TestFirecracker drives the Firecracker backend through the real daemons
// and CLI, with the strict fake in firecracker's place: the fake checks
// every API request against Firecracker's API description and records it,
// and its vsock socket leads to a real banger-agent on the host, so the
// daemon-to-agent path runs end to end without KVM.
func TestFirecracker(t *testing.T) {
	requireBase(t)
	for _, tool := range []string{"debootstrap", "mkfs.ext4", "resize2fs", "e2fsck", "npm", "pgrep"} {
		_, err := exec.LookPath(tool)
		require(t, err == nil, tool+" not installed")
	}
	e := newEnv(t)
	fc := e.fakeFirecracker(t)
	e.startFC(fc)

	start := time.Now()
	r := e.CLI(append([]string{"vm", "create", "--name", "fc1"}, smallVM...)...)
	if r.Code != 0 {
		t.Fatalf("vm create fc1 (with the first image build): %s", r)
	}
	t.Logf("image build + create: %s", time.Since(start).Round(time.Second))
	v := e.vmJSON("fc1")
	id := v["id"].(string)
	want := bootSequence(v)
	if !strings.HasPrefix(v["hypervisor"].(string), "firecracker") || v["state"] != "running" {
		t.Fatalf("vm show: hypervisor %v state %v", v["hypervisor"], v["state"])
	}
	if diff := cmp.Diff(want, normalize(t, e.Root, fc.records(t, id, 0))); diff != "" {
		t.Fatalf("vm create: requests (-want +got):\n%s", diff)
	}
	seen := fc.count(t, id)

	t.Run("exec reaches the agent through hybrid vsock", func(t *testing.T) {
		r := e.CLI("vm", "exec", "fc1", "--", "sh", "-c", "echo out; echo err >&2; exit 42")
		if r.Code != 42 || r.Stdout != "out\n" || r.Stderr != "err\n" {
			t.Errorf("exec: %s", r)
		}
		lines, _ := firecrackertest.Records(fc.dir, id)
		if !slices.Contains(lines[seen:], "vsock: CONNECT 1024: OK") {
			t.Errorf("no vsock connection recorded: %q", lines[seen:])
		}
		if got := fc.records(t, id, seen); len(got) != 0 {
			t.Errorf("exec sent API requests: %q", got)
		}
		seen = fc.count(t, id)
	})

	t.Run("a daemon restart adopts the running VM", func(t *testing.T) {
		pid := e.vmJSON("fc1")["pid"]
		e.Stop()
		e.startFC(fc)
		v := e.vmJSON("fc1")
		if v["state"] != "running" || v["pid"] != pid {
			t.Fatalf("after daemon restart: state %v pid %v (was %v)", v["state"], v["pid"], pid)
		}
		if r := e.CLI("vm", "exec", "fc1", "--", "true"); r.Code != 0 {
			t.Errorf("exec after adoption: %s", r)
		}
		if got := fc.records(t, id, seen); len(got) != 0 {
			t.Errorf("adoption sent API requests: %q", got)
		}
		seen = fc.count(t, id)
	})

	t.Run("killing firecracker stops the VM and cleans up", func(t *testing.T) {
		v := e.vmJSON("fc1")
		pid := int(v["pid"].(float64))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for e.vmJSON("fc1")["state"] == "running" {
			if time.Now().After(deadline) {
				t.Fatal("the VM still runs 15s after its firecracker was killed")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if st := e.vmJSON("fc1")["state"]; st != "stopped" {
			t.Errorf("state %v, want stopped", st)
		}
		// The daemon's watcher cleans up right after the exit.
		runDir := filepath.Join(e.Layout.RuntimeDir, "vms", id)
		for {
			_, err := os.Stat(runDir)
			tapGone := !strings.Contains(e.IP("link", "show"), v["tap"].(string))
			if os.IsNotExist(err) && tapGone {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the kill: run dir %s (%v), tap %s gone: %v", runDir, err, v["tap"], tapGone)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if running("--listen unix:" + filepath.Join(e.Layout.RuntimeDir, "vms", id)) {
			t.Error("the emulated guest (banger-agent) outlived its firecracker")
		}
		seen = fc.count(t, id)
	})

	t.Run("a firecracker error is one clear line", func(t *testing.T) {
		msg := "Could not create the network device: Open tap device failed: Resource busy (os error 16)."
		fc.cfg.Faults = map[string]string{"PUT /network-interfaces/eth0": msg}
		fc.write(t)
		defer func() { fc.cfg.Faults = nil; fc.write(t) }()
		r := e.CLI("vm", "start", "fc1")
		if r.Code == 0 {
			t.Fatalf("start succeeded: %s", r)
		}
		// Progress lines come first; the error is one line of its own.
		var lines []string
		for _, l := range strings.Split(r.Stderr, "\n") {
			if strings.Contains(l, "firecracker refused") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.Contains(lines[0], "firecracker refused PUT /network-interfaces/eth0 (400): "+msg) {
			t.Errorf("want one line with the fault:\n%s", r.Stderr)
		} else {
			t.Logf("the user sees: %s", lines[0])
		}
		v := e.vmJSON("fc1")
		if v["state"] != "error" || !strings.Contains(fmt.Sprint(v["last_error"]), msg) {
			t.Errorf("state %v, last_error %v", v["state"], v["last_error"])
		}
		wantFail := append(slices.Clone(want[:9]), `PUT /network-interfaces/eth0 {"guest_mac":"`+v["mac"].(string)+`","host_dev_name":"`+v["tap"].(string)+`","iface_id":"eth0"} -> 400 `+msg)
		if diff := cmp.Diff(wantFail, normalize(t, e.Root, fc.records(t, id, seen))); diff != "" {
			t.Errorf("requests (-want +got):\n%s", diff)
		}
		if running(filepath.Join(e.Layout.RuntimeDir, "vms", id, "fc.sock")) {
			t.Error("firecracker left running after a failed start")
		}
		if out := e.IP("link", "show"); strings.Contains(out, v["tap"].(string)) {
			t.Errorf("tap left after a failed start:\n%s", out)
		}
		seen = fc.count(t, id)
	})

	t.Run("start and stop", func(t *testing.T) {
		if r := e.CLI("vm", "start", "fc1"); r.Code != 0 {
			t.Fatalf("start: %s", r)
		}
		if diff := cmp.Diff(want, normalize(t, e.Root, fc.records(t, id, seen))); diff != "" {
			t.Errorf("vm start: requests (-want +got):\n%s", diff)
		}
		seen = fc.count(t, id)
		if r := e.CLI("vm", "exec", "fc1", "--", "true"); r.Code != 0 {
			t.Errorf("exec: %s", r)
		}
		begin := time.Now()
		if r := e.CLI("vm", "stop", "fc1"); r.Code != 0 {
			t.Fatalf("stop: %s", r)
		}
		took := time.Since(begin).Round(100 * time.Millisecond)
		if st := e.vmJSON("fc1")["state"]; st != "stopped" {
			t.Errorf("state after stop: %v", st)
		}
		// The agent syncs and shuts the guest down. A guest reboot ends
		// Firecracker; a power-off on x86 only halts the vCPUs, and the
		// daemon kills Firecracker when the stop timeout runs out.
		got := fc.records(t, id, seen)
		switch {
		case slices.Equal(got, []string{"guest: reboot: firecracker exits", "exit 0"}):
			t.Logf("stop: the guest rebooted, firecracker exited (%s)", took)
		case slices.Equal(got, []string{"guest: power off: vCPUs halted, firecracker stays up"}):
			t.Logf("stop: the guest powered off; firecracker was killed after the stop timeout (%s)", took)
		default:
			t.Errorf("vm stop: records %q", got)
		}
		if running(filepath.Join(e.Layout.RuntimeDir, "vms", id, "fc.sock")) {
			t.Error("firecracker still running after stop")
		}
		seen = fc.count(t, id)
	})

	t.Run("delete kills and removes everything", func(t *testing.T) {
		if r := e.CLI("vm", "start", "fc1"); r.Code != 0 {
			t.Fatalf("start: %s", r)
		}
		seen = fc.count(t, id)
		v := e.vmJSON("fc1")
		if r := e.CLI("vm", "delete", "fc1"); r.Code != 0 {
			t.Fatalf("delete: %s", r)
		}
		if got := fc.records(t, id, seen); len(got) != 0 {
			t.Errorf("delete sent API requests: %q", got)
		}
		for _, p := range []string{v["dir"].(string), filepath.Join(e.Layout.RuntimeDir, "vms", id)} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s still there", p)
			}
		}
		if running(filepath.Join(e.Layout.RuntimeDir, "vms", id)) {
			t.Error("firecracker or its guest still running after delete")
		}
		if r := e.CLI("vm", "show", "fc1"); r.Code == 0 {
			t.Errorf("fc1 still listed: %s", r)
		}
	})

	t.Run("doctor names firecracker and why", func(t *testing.T) {
		r := e.run(0, append(append([]string{"env"}, fc.env()...), filepath.Join(binDir, "banger"), "doctor", "--json")...)
		var rep struct {
			Checks []struct {
				Name, Status, Detail string
			} `json:"checks"`
			Hypervisor struct{ Backend, Reason, Version string } `json:"hypervisor"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
			t.Fatalf("doctor --json: %v\n%s", err, r)
		}
		if rep.Hypervisor.Backend != "firecracker" || rep.Hypervisor.Version != firecrackertest.DefaultVersion || !strings.Contains(rep.Hypervisor.Reason, "as configured") {
			t.Errorf("doctor chose %+v", rep.Hypervisor)
		}
		i := slices.IndexFunc(rep.Checks, func(c struct{ Name, Status, Detail string }) bool { return c.Name == "firecracker" })
		if i < 0 || rep.Checks[i].Status != "pass" || !strings.Contains(rep.Checks[i].Detail, "1.16.1: guests find their devices through ACPI") {
			t.Errorf("doctor's firecracker line: %+v", rep.Checks)
		}
	})
}
