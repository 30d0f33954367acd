package firecrackertest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// step is one request and what the fake must answer.
type step struct {
	method, path, body string
	status             int
	fault              string // a substring of the fault_message
}

// world is the files a VM names: a kernel (the test binary is an x86_64
// ELF executable), an initrd, a disk, a read-only disk.
type world struct{ dir, kernel, initrd, disk, roDisk string }

func newWorld(t *testing.T) world {
	t.Helper()
	dir, err := os.MkdirTemp("", "bfct")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w := world{dir: dir, kernel: self, initrd: filepath.Join(dir, "initrd"), disk: filepath.Join(dir, "disk"), roDisk: filepath.Join(dir, "ro")}
	for _, f := range []string{w.initrd, w.disk, w.roDisk} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w world) r(s string) string {
	return strings.NewReplacer("$K", w.kernel, "$I", w.initrd, "$D", w.disk, "$R", w.roDisk, "$T", w.dir).Replace(s)
}

func newTestFake(t *testing.T, w world) *fake {
	t.Helper()
	rec, err := newRecorder(w.dir, "t1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rec.close)
	return newFake(Config{Records: w.dir, Version: DefaultVersion}, options{id: "t1"}, rec)
}

func run(t *testing.T, w world, f *fake, steps []step) {
	t.Helper()
	for i, s := range steps {
		req := httptest.NewRequest(s.method, s.path, strings.NewReader(w.r(s.body)))
		rr := httptest.NewRecorder()
		f.ServeHTTP(rr, req)
		var body struct {
			Fault string `json:"fault_message"`
		}
		json.Unmarshal(rr.Body.Bytes(), &body)
		if rr.Code != s.status || !strings.Contains(body.Fault, s.fault) || (s.fault == "") != (body.Fault == "") {
			t.Errorf("step %d: %s %s %s: got %d %q, want %d with a fault containing %q", i, s.method, s.path, s.body, rr.Code, body.Fault, s.status, s.fault)
		}
	}
}

// boot is a valid configuration up to InstanceStart.
var bootSteps = []step{
	{"PUT", "/machine-config", `{"vcpu_count":2,"mem_size_mib":256}`, 204, ""},
	{"PUT", "/boot-source", `{"kernel_image_path":"$K","initrd_path":"$I","boot_args":"console=ttyS0"}`, 204, ""},
	{"PUT", "/drives/root", `{"drive_id":"root","path_on_host":"$R","is_root_device":false,"is_read_only":true}`, 204, ""},
	{"PUT", "/drives/work", `{"drive_id":"work","path_on_host":"$D","is_root_device":false,"is_read_only":false,"cache_type":"Writeback"}`, 204, ""},
	{"PUT", "/vsock", `{"guest_cid":3,"uds_path":"$T/v.sock"}`, 204, ""},
	{"PUT", "/actions", `{"action_type":"InstanceStart"}`, 204, ""},
}

func TestFakeIsStrict(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"unknown field", []step{{"PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":128,"vcpus":2}`, 400, "unknown field `vcpus`, expected one of"}}},
		{"missing required field", []step{{"PUT", "/machine-config", `{"mem_size_mib":128}`, 400, "missing field `vcpu_count`"}}},
		{"wrong type", []step{{"PUT", "/machine-config", `{"vcpu_count":"2","mem_size_mib":128}`, 400, "invalid type: string \"2\", expected an integer"}}},
		{"above the maximum", []step{{"PUT", "/machine-config", `{"vcpu_count":33,"mem_size_mib":128}`, 400, "between 1 and 32"}}},
		{"negative", []step{{"PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":-1}`, 400, "expected an unsigned integer"}}},
		{"zero memory", []step{{"PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":0}`, 400, "memory size"}}},
		{"odd vCPUs with SMT", []step{{"PUT", "/machine-config", `{"vcpu_count":3,"mem_size_mib":128,"smt":true}`, 400, "even number"}}},
		{"not an object", []step{{"PUT", "/machine-config", `[1]`, 400, "invalid type: sequence"}}},
		{"value outside the enum", []step{{"PUT", "/drives/d", `{"drive_id":"d","path_on_host":"$D","is_root_device":false,"is_read_only":false,"cache_type":"Sometimes"}`, 400, "unknown variant `Sometimes`"}}},
		{"enum is exact", []step{{"PUT", "/actions", `{"action_type":"instancestart"}`, 400, "unknown variant"}}},
		{"logger level is case-insensitive", []step{{"PUT", "/logger", `{"level":"info","log_path":"$T/log"}`, 204, ""}}},
		{"null leaves an option unset", []step{{"PUT", "/boot-source", `{"kernel_image_path":"$K","initrd_path":null}`, 204, ""}}},
		{"null is not a required field", []step{{"PUT", "/boot-source", `{"kernel_image_path":null}`, 400, "invalid type: null"}}},
		{"nested definitions", []step{{"PUT", "/drives/d", `{"drive_id":"d","path_on_host":"$D","is_root_device":false,"is_read_only":false,"rate_limiter":{"bandwidth":{"size":1}}}`, 400, "missing field `refill_time`"}}},
		{"drive id from the path and the body", []step{{"PUT", "/drives/a", `{"drive_id":"b","path_on_host":"$D","is_root_device":false,"is_read_only":false}`, 400, "does not match"}}},
		{"ids are alphanumeric", []step{{"PUT", "/drives/a-b", `{"drive_id":"a-b","path_on_host":"$D","is_root_device":false,"is_read_only":false}`, 400, "alphanumeric characters and underscores"}}},
		{"a drive whose file is missing", []step{{"PUT", "/drives/d", `{"drive_id":"d","path_on_host":"$T/nope","is_root_device":false,"is_read_only":true}`, 400, "no such file"}}},
		{"two root drives", []step{
			{"PUT", "/drives/a", `{"drive_id":"a","path_on_host":"$D","is_root_device":true,"is_read_only":false}`, 204, ""},
			{"PUT", "/drives/b", `{"drive_id":"b","path_on_host":"$R","is_root_device":true,"is_read_only":true}`, 400, "root block device already exists"},
		}},
		{"a missing kernel", []step{{"PUT", "/boot-source", `{"kernel_image_path":"$T/vmlinux"}`, 400, "kernel file cannot be opened"}}},
		{"a kernel that is not ELF", []step{
			{"PUT", "/boot-source", `{"kernel_image_path":"$I"}`, 204, ""},
			{"PUT", "/actions", `{"action_type":"InstanceStart"}`, 400, "failed to load ELF kernel image"},
		}},
		{"start without a kernel", []step{{"PUT", "/actions", `{"action_type":"InstanceStart"}`, 400, "without kernel configuration"}}},
		{"bad MAC", []step{{"PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"tap0","guest_mac":"52:54:00"}`, 400, "invalid MAC address"}}},
		{"interface id from the path and the body", []step{{"PUT", "/network-interfaces/eth0", `{"iface_id":"eth1","host_dev_name":"tap0"}`, 400, "does not match the id from the body [eth1]"}}},
		{"vsock cid below 3", []step{{"PUT", "/vsock", `{"guest_cid":2,"uds_path":"$T/v.sock"}`, 400, "between 3 and"}}},
		{"vsock socket in use", []step{
			{"PUT", "/vsock", `{"guest_cid":3,"uds_path":"$T/v.sock"}`, 204, ""},
			{"PUT", "/vsock", `{"guest_cid":3,"uds_path":"$T/v.sock"}`, 400, "address already in use"},
		}},
		{"metrics once", []step{
			{"PUT", "/metrics", `{"metrics_path":"$T/m"}`, 204, ""},
			{"PUT", "/metrics", `{"metrics_path":"$T/m"}`, 400, "Reinitialization of metrics not allowed"},
		}},
		{"GET with a body", []step{{"GET", "/version", `{}`, 400, "GET request cannot have a body."}}},
		{"PUT without a body", []step{{"PUT", "/vsock", ``, 400, "Empty PUT request."}}},
		{"unknown path", []step{{"PUT", "/volumes", `{}`, 400, "Invalid request method and/or path: PUT /volumes."}}},
		{"wrong method", []step{{"DELETE", "/vsock", ``, 400, "Invalid request method and/or path"}}},
		{"described but not emulated", []step{{"PUT", "/balloon", `{"amount_mib":1,"deflate_on_oom":true}`, 400, "not emulated"}}},
		{"post-boot operations before boot", []step{
			{"PATCH", "/vm", `{"state":"Paused"}`, 400, notBeforeBoot},
			{"PUT", "/actions", `{"action_type":"SendCtrlAltDel"}`, 400, notBeforeBoot},
			{"PUT", "/actions", `{"action_type":"FlushMetrics"}`, 400, notBeforeBoot},
			{"PUT", "/snapshot/create", `{"snapshot_path":"$T/s","mem_file_path":"$T/m"}`, 400, notBeforeBoot},
			{"PATCH", "/drives/work", `{"drive_id":"work"}`, 400, notBeforeBoot},
		}},
		{"pre-boot resources after boot", append(append([]step{}, bootSteps...),
			step{"PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":128}`, 400, notAfterBoot},
			step{"PATCH", "/machine-config", `{"vcpu_count":1}`, 400, notAfterBoot},
			step{"PUT", "/boot-source", `{"kernel_image_path":"$K"}`, 400, notAfterBoot},
			step{"PUT", "/drives/work", `{"drive_id":"work","path_on_host":"$D","is_root_device":false,"is_read_only":false}`, 400, notAfterBoot},
			step{"PUT", "/network-interfaces/eth0", `{"iface_id":"eth0","host_dev_name":"tap0"}`, 400, notAfterBoot},
			step{"PUT", "/vsock", `{"guest_cid":3,"uds_path":"$T/w.sock"}`, 400, notAfterBoot},
			step{"PUT", "/logger", `{"log_path":"$T/log"}`, 400, notAfterBoot},
			step{"PUT", "/metrics", `{"metrics_path":"$T/m"}`, 400, notAfterBoot},
			step{"PUT", "/entropy", `{}`, 400, notAfterBoot},
			step{"PUT", "/actions", `{"action_type":"InstanceStart"}`, 400, notAfterBoot},
			step{"PUT", "/snapshot/load", `{"snapshot_path":"$T/s","mem_file_path":"$T/m"}`, 400, notAfterBoot},
			step{"PATCH", "/drives/work", `{"drive_id":"work","path_on_host":"$D"}`, 204, ""},
			step{"PUT", "/actions", `{"action_type":"FlushMetrics"}`, 204, ""},
			step{"GET", "/", ``, 200, ""},
		)},
		{"a snapshot needs a paused VM", append(append([]step{}, bootSteps...),
			step{"PUT", "/snapshot/create", `{"snapshot_path":"$T/s","mem_file_path":"$T/m"}`, 400, "must be paused"},
			step{"PATCH", "/vm", `{"state":"Paused"}`, 204, ""},
			step{"PUT", "/snapshot/create", `{"snapshot_path":"$T/s","mem_file_path":"$T/m","snapshot_type":"Diff"}`, 400, "track_dirty_pages"},
			step{"PUT", "/snapshot/create", `{"snapshot_path":"$T/s","mem_file_path":"$T/m"}`, 204, ""},
			step{"PATCH", "/vm", `{"state":"Resumed"}`, 204, ""},
		)},
		{"snapshot load only on a fresh process", []step{
			{"PUT", "/logger", `{"log_path":"$T/log"}`, 204, ""},
			{"PUT", "/machine-config", `{"vcpu_count":1,"mem_size_mib":128}`, 204, ""},
			{"PUT", "/snapshot/load", `{"snapshot_path":"$T/s","mem_file_path":"$T/m"}`, 400, "not allowed after configuring boot-specific resources"},
		}},
		{"snapshot load wants one memory source", []step{
			{"PUT", "/snapshot/load", `{"snapshot_path":"$T/s"}`, 400, "either `mem_backend` or `mem_file_path`"},
			{"PUT", "/snapshot/load", `{"snapshot_path":"$T/s","mem_file_path":"$T/m","mem_backend":{"backend_type":"File","backend_path":"$T/m"}}`, 400, "exclusively"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			f := newTestFake(t, w)
			run(t, w, f, tt.steps)
		})
	}
}

func TestFakeSnapshotRoundTrip(t *testing.T) {
	w := newWorld(t)
	f := newTestFake(t, w)
	run(t, w, f, append(append([]step{}, bootSteps...),
		step{"PATCH", "/vm", `{"state":"Paused"}`, 204, ""},
		step{"PUT", "/snapshot/create", `{"snapshot_path":"$T/s","mem_file_path":"$T/m"}`, 204, ""},
	))
	if fi, err := os.Stat(filepath.Join(w.dir, "m")); err != nil || fi.Size() != 256<<20 {
		t.Fatalf("memory file: %v, %v", fi, err)
	}
	restored := newTestFake(t, w)
	run(t, w, restored, []step{
		{"PUT", "/logger", `{"log_path":"$T/log2"}`, 204, ""},
		{"PUT", "/snapshot/load", `{"snapshot_path":"$T/s","mem_backend":{"backend_type":"File","backend_path":"$T/m"},"vsock_override":{"uds_path":"$T/v2.sock"}}`, 204, ""},
	})
	if restored.state != statePaused || restored.vm.Vsock.UDSPath != w.dir+"/v2.sock" || len(restored.vm.Drives) != 2 {
		t.Fatalf("restored: state %q, vsock %+v, %d drives", restored.state, restored.vm.Vsock, len(restored.vm.Drives))
	}
	run(t, w, restored, []step{{"PATCH", "/vm", `{"state":"Resumed"}`, 204, ""}})
	if restored.state != stateRunning {
		t.Errorf("state after resume: %q", restored.state)
	}
}

func TestFakeRefusesChunkedBodies(t *testing.T) {
	w := newWorld(t)
	f := newTestFake(t, w)
	req := httptest.NewRequest("PUT", "/machine-config", strings.NewReader(`{"vcpu_count":1,"mem_size_mib":128}`))
	req.TransferEncoding = []string{"chunked"}
	rr := httptest.NewRecorder()
	f.ServeHTTP(rr, req)
	if rr.Code != http.StatusBadRequest || !strings.Contains(rr.Body.String(), "Content-Length") {
		t.Errorf("chunked body: %d %s", rr.Code, rr.Body)
	}
}

func TestFakeRecordsRequests(t *testing.T) {
	w := newWorld(t)
	f := newTestFake(t, w)
	f.cfg.Faults = map[string]string{"PUT /vsock": "injected"}
	run(t, w, f, []step{
		{"GET", "/version", ``, 200, ""},
		{"PUT", "/machine-config", `{ "vcpu_count": 2,  "mem_size_mib": 256 }`, 204, ""},
		{"PUT", "/vsock", `{"guest_cid":3,"uds_path":"x"}`, 400, "injected"},
	})
	got, err := Records(w.dir, "t1")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"GET /version -> 200",
		`PUT /machine-config {"mem_size_mib":256,"vcpu_count":2} -> 204`,
		`PUT /vsock {"guest_cid":3,"uds_path":"x"} -> 400 injected`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		argv    []string
		want    options
		wantErr string
	}{
		{argv: []string{"--api-sock", "/r/fc.sock", "--id", "f1"}, want: options{apiSock: "/r/fc.sock", id: "f1", args: []string{"--api-sock", "/r/fc.sock", "--id", "f1"}}},
		// The jailer's form: --id first, timing arguments, then ours.
		{argv: []string{"--id", "f1", "--start-time-us", "1", "--start-time-cpu-us", "2", "--parent-cpu-time-us", "3", "--api-sock=/r/fc.sock"}, want: options{apiSock: "/r/fc.sock", id: "f1", args: []string{"--id", "f1", "--api-sock", "/r/fc.sock"}}},
		{argv: []string{"--version"}, want: options{apiSock: "/run/firecracker.socket", id: "anonymous-instance", version: true}},
		{argv: []string{"--config-file", "x"}, wantErr: "Found argument '--config-file'"},
		{argv: []string{"--api-sock"}, wantErr: "requires a value"},
	}
	for _, tt := range tests {
		got, err := parseArgs(tt.argv)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseArgs(%q) error %v, want %q", tt.argv, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !cmp.Equal(tt.want, got, cmp.AllowUnexported(options{})) {
			t.Errorf("parseArgs(%q) = %+v, %v; want %+v", tt.argv, got, err, tt.want)
		}
	}
}
