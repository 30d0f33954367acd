package firecrackertest

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Instance states, as GET / reports them.
const (
	stateNotStarted = "Not started"
	stateRunning    = "Running"
	statePaused     = "Paused"
)

// defaultBootArgs is what Firecracker boots with when boot_args is absent.
const defaultBootArgs = "reboot=k panic=1 nomodule 8250.nr_uarts=0 i8042.noaux i8042.nomux i8042.dumbkbd swiotlb=noforce"

// The bodies, as the fake keeps them.
type (
	machineConfig struct {
		VCPUCount       int    `json:"vcpu_count"`
		MemSizeMiB      int    `json:"mem_size_mib"`
		SMT             bool   `json:"smt"`
		TrackDirtyPages bool   `json:"track_dirty_pages"`
		HugePages       string `json:"huge_pages,omitempty"`
		CPUTemplate     string `json:"cpu_template,omitempty"`
	}
	machineUpdate struct {
		VCPUCount       *int    `json:"vcpu_count"`
		MemSizeMiB      *int    `json:"mem_size_mib"`
		SMT             *bool   `json:"smt"`
		TrackDirtyPages *bool   `json:"track_dirty_pages"`
		HugePages       *string `json:"huge_pages"`
		CPUTemplate     *string `json:"cpu_template"`
	}
	bootSource struct {
		KernelImagePath string  `json:"kernel_image_path"`
		InitrdPath      string  `json:"initrd_path,omitempty"`
		BootArgs        *string `json:"boot_args,omitempty"`
	}
	drive struct {
		DriveID      string          `json:"drive_id"`
		PathOnHost   *string         `json:"path_on_host,omitempty"`
		IsRootDevice bool            `json:"is_root_device"`
		IsReadOnly   *bool           `json:"is_read_only,omitempty"`
		CacheType    string          `json:"cache_type,omitempty"`
		Partuuid     string          `json:"partuuid,omitempty"`
		IOEngine     string          `json:"io_engine,omitempty"`
		Socket       *string         `json:"socket,omitempty"`
		RateLimiter  json.RawMessage `json:"rate_limiter,omitempty"`
	}
	nic struct {
		IfaceID     string `json:"iface_id"`
		HostDevName string `json:"host_dev_name"`
		GuestMAC    string `json:"guest_mac,omitempty"`
		MTU         int    `json:"mtu,omitempty"`
	}
	vsockConfig struct {
		GuestCID uint32 `json:"guest_cid"`
		UDSPath  string `json:"uds_path"`
	}
	loggerConfig struct {
		LogPath *string `json:"log_path"`
	}
	metricsConfig struct {
		MetricsPath string `json:"metrics_path"`
	}
	snapshotCreate struct {
		MemFilePath  string `json:"mem_file_path"`
		SnapshotPath string `json:"snapshot_path"`
		SnapshotType string `json:"snapshot_type"`
	}
	snapshotLoad struct {
		SnapshotPath string `json:"snapshot_path"`
		MemFilePath  string `json:"mem_file_path"`
		MemBackend   *struct {
			BackendType string `json:"backend_type"`
			BackendPath string `json:"backend_path"`
		} `json:"mem_backend"`
		ResumeVM         bool `json:"resume_vm"`
		NetworkOverrides []struct {
			IfaceID     string `json:"iface_id"`
			HostDevName string `json:"host_dev_name"`
		} `json:"network_overrides"`
		VsockOverride *struct {
			UDSPath string `json:"uds_path"`
		} `json:"vsock_override"`
	}
)

// vmConfig is what GET /vm/config answers and what a fake snapshot holds.
type vmConfig struct {
	BootSource *bootSource   `json:"boot-source,omitempty"`
	Drives     []drive       `json:"drives"`
	Machine    machineConfig `json:"machine-config"`
	Network    []nic         `json:"network-interfaces"`
	Vsock      *vsockConfig  `json:"vsock,omitempty"`
	Entropy    *struct{}     `json:"entropy,omitempty"`
}

// fake is one emulated Firecracker process.
type fake struct {
	cfg  Config
	opts options
	rec  *recorder
	defs map[string]definition
	exit chan int
	// spawn starts processes from one locked thread, so that the guest's
	// parent-death signal fires only when the whole fake dies.
	spawn chan spawnRequest

	mu         sync.Mutex
	state      string
	configured bool // something other than the logger and metrics
	logFile    *os.File
	metrics    *os.File
	vm         vmConfig
	taps       map[string]*os.File
	vsockLn    net.Listener
	booted     chan struct{} // closed when the guest starts running
	guest      *guest
}

func newFake(cfg Config, o options, rec *recorder) *fake {
	defs := definitions()
	// PATCH /machine-config takes any subset of the fields.
	mc := defs["MachineConfiguration"]
	defs["MachineConfigurationUpdate"] = definition{fields: mc.fields}
	f := &fake{
		cfg: cfg, opts: o, rec: rec, defs: defs,
		exit:   make(chan int, 1),
		spawn:  make(chan spawnRequest),
		state:  stateNotStarted,
		vm:     vmConfig{Machine: machineConfig{VCPUCount: 1, MemSizeMiB: 128}, Drives: []drive{}, Network: []nic{}},
		taps:   map[string]*os.File{},
		booted: make(chan struct{}),
	}
	go f.spawner()
	return f
}

// logf writes to the log file configured by PUT /logger, if any.
func (f *fake) logf(format string, args ...any) {
	if f.logFile != nil {
		fmt.Fprintf(f.logFile, "[%s:fake] %s\n", f.opts.id, strings.TrimSpace(fmt.Sprintf(format, args...)))
	}
}

// handle routes one request. The caller holds f.mu.
func (f *fake) handle(method, path string, body []byte) answer {
	if msg, ok := f.cfg.Faults[method+" "+path]; ok {
		return fault("%s", msg)
	}
	tokens := strings.Split(strings.TrimPrefix(path, "/"), "/")
	res, id := tokens[0], ""
	if len(tokens) > 1 {
		id = tokens[1]
	}
	invalid := fault("Invalid request method and/or path: %s %s.", method, path)
	if len(tokens) > 2 {
		return invalid
	}
	hasBody := len(bytes.TrimSpace(body)) > 0
	switch method {
	case "GET":
		if hasBody {
			return fault("GET request cannot have a body.")
		}
		switch {
		case path == "/":
			return okData(map[string]string{"app_name": "Firecracker", "id": f.opts.id, "state": f.state, "vmm_version": f.cfg.Version})
		case path == "/version":
			return okData(map[string]string{"firecracker_version": f.cfg.Version})
		case path == "/machine-config":
			return okData(f.vm.Machine)
		case path == "/vm/config":
			return okData(f.vm)
		}
	case "PUT":
		if !hasBody {
			return fault("Empty PUT request.")
		}
		switch res {
		case "actions":
			return f.putAction(body)
		case "boot-source":
			return f.putBootSource(body)
		case "drives":
			return f.putDrive(id, body)
		case "logger":
			return f.putLogger(body)
		case "machine-config":
			return f.putMachineConfig(body)
		case "metrics":
			return f.putMetrics(body)
		case "network-interfaces":
			return f.putNIC(id, body)
		case "snapshot":
			switch id {
			case "create":
				return f.putSnapshotCreate(body)
			case "load":
				return f.putSnapshotLoad(body)
			}
			return invalid
		case "vsock":
			return f.putVsock(body)
		case "entropy":
			return f.putEntropy(body)
		}
	case "PATCH":
		if !hasBody {
			return fault("Empty PATCH request.")
		}
		switch res {
		case "drives":
			return f.patchDrive(id, body)
		case "machine-config":
			return f.patchMachineConfig(body)
		case "network-interfaces":
			return f.patchNIC(id, body)
		case "vm":
			return f.patchVM(body)
		}
	}
	switch res {
	case "balloon", "cpu-config", "mmds", "serial", "pmem", "hotplug":
		return fault("fake firecracker: %s %s is in the API description but not emulated", method, path)
	}
	return invalid
}

// preBoot refuses a pre-boot-only request after InstanceStart.
func (f *fake) preBoot() (answer, bool) {
	if f.state != stateNotStarted {
		return fault(notAfterBoot), false
	}
	return answer{}, true
}

// postBoot refuses a post-boot-only request before InstanceStart.
func (f *fake) postBoot() (answer, bool) {
	if f.state == stateNotStarted {
		return fault(notBeforeBoot), false
	}
	return answer{}, true
}

// checkedID is Firecracker's rule for ids in paths.
func checkedID(id string) (answer, bool) {
	if id == "" {
		return fault("Empty ID in request."), false
	}
	for _, r := range id {
		if r != '_' && !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return fault("API Resource IDs can only contain alphanumeric characters and underscores."), false
		}
	}
	return answer{}, true
}

func (f *fake) putAction(body []byte) answer {
	var a struct {
		ActionType string `json:"action_type"`
	}
	if err := validate(f.defs, "InstanceActionInfo", body, &a); err != nil {
		return serdeFault(err)
	}
	switch a.ActionType {
	case "InstanceStart":
		if r, ok := f.preBoot(); !ok {
			return r
		}
		if err := f.checkBoot(); err != nil {
			return fault("Start microvm error: %v", err)
		}
		if err := f.startGuest(); err != nil {
			return fault("Start microvm error: %v", err)
		}
		return ok()
	case "FlushMetrics":
		if r, ok := f.postBoot(); !ok {
			return r
		}
		if f.metrics != nil {
			fmt.Fprintf(f.metrics, "{\"fake\":{\"flush\":1}}\n")
		}
		return ok()
	default: // SendCtrlAltDel
		if r, ok := f.postBoot(); !ok {
			return r
		}
		a := ok()
		if g := f.guest; g != nil {
			a.then = g.ctrlAltDel
		} else {
			a.then = func() {
				f.rec.add("guest: reboot: firecracker exits")
				f.exit <- 0
			}
		}
		return a
	}
}

func (f *fake) putBootSource(body []byte) answer {
	if r, ok := f.preBoot(); !ok {
		return r
	}
	var b bootSource
	if err := validate(f.defs, "BootSource", body, &b); err != nil {
		return serdeFault(err)
	}
	k, err := os.Open(f.in(b.KernelImagePath))
	if err != nil {
		return fault("Boot source error: The kernel file cannot be opened: %v", err)
	}
	k.Close()
	if b.InitrdPath != "" {
		i, err := os.Open(f.in(b.InitrdPath))
		if err != nil {
			return fault("Boot source error: The initrd file cannot be opened due to invalid path or invalid permissions. %v", err)
		}
		i.Close()
	}
	f.vm.BootSource = &b
	f.configured = true
	return ok()
}

func (f *fake) putDrive(id string, body []byte) answer {
	if r, ok := checkedID(id); !ok {
		return r
	}
	if r, ok := f.preBoot(); !ok {
		return r
	}
	var d drive
	if err := validate(f.defs, "Drive", body, &d); err != nil {
		return serdeFault(err)
	}
	if d.DriveID != id {
		return fault("The id from the path does not match the id from the body!")
	}
	if d.Socket != nil {
		return fault("fake firecracker: vhost-user-block drives (socket) are not emulated")
	}
	if d.PathOnHost == nil || d.IsReadOnly == nil {
		return fault("Drive config error: a virtio-block drive needs path_on_host and is_read_only")
	}
	if err := openDisk(f.in(*d.PathOnHost), *d.IsReadOnly); err != nil {
		return fault("Drive config error: Unable to create the virtio block device: Virtio backend error: Error manipulating the backing file: %v", err)
	}
	at := slices.IndexFunc(f.vm.Drives, func(x drive) bool { return x.DriveID == id })
	if d.IsRootDevice && slices.ContainsFunc(f.vm.Drives, func(x drive) bool { return x.IsRootDevice && x.DriveID != id }) {
		return fault("Drive config error: A root block device already exists!")
	}
	if at >= 0 {
		f.vm.Drives = slices.Delete(f.vm.Drives, at, at+1)
	}
	// A root device goes first; the others keep the order they came in,
	// which is the order the guest sees them in.
	if d.IsRootDevice {
		f.vm.Drives = slices.Insert(f.vm.Drives, 0, d)
	} else if at >= 0 {
		f.vm.Drives = slices.Insert(f.vm.Drives, min(at, len(f.vm.Drives)), d)
	} else {
		f.vm.Drives = append(f.vm.Drives, d)
	}
	f.configured = true
	return ok()
}

func openDisk(path string, readOnly bool) error {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	fd, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return err
	}
	return fd.Close()
}

func (f *fake) patchDrive(id string, body []byte) answer {
	if r, ok := checkedID(id); !ok {
		return r
	}
	if r, ok := f.postBoot(); !ok {
		return r
	}
	var d struct {
		DriveID    string  `json:"drive_id"`
		PathOnHost *string `json:"path_on_host"`
	}
	if err := validate(f.defs, "PartialDrive", body, &d); err != nil {
		return serdeFault(err)
	}
	if d.DriveID != id {
		return fault("The id from the path does not match the id from the body!")
	}
	at := slices.IndexFunc(f.vm.Drives, func(x drive) bool { return x.DriveID == id })
	if at < 0 {
		return fault("Drive config error: Invalid block device ID!")
	}
	if d.PathOnHost != nil {
		if err := openDisk(f.in(*d.PathOnHost), *f.vm.Drives[at].IsReadOnly); err != nil {
			return fault("Drive config error: Unable to patch the block device: %v", err)
		}
		f.vm.Drives[at].PathOnHost = d.PathOnHost
	}
	return ok()
}

func (f *fake) putLogger(body []byte) answer {
	if f.state != stateNotStarted {
		return fault(notAfterBoot)
	}
	var l loggerConfig
	if err := validate(f.defs, "Logger", body, &l); err != nil {
		return serdeFault(err)
	}
	if l.LogPath != nil {
		file, err := os.OpenFile(f.in(*l.LogPath), os.O_RDWR|os.O_CREATE|unix.O_NONBLOCK, 0o644)
		if err != nil {
			return fault("Logger error: Failed to open target file: %v", err)
		}
		if f.logFile != nil {
			f.logFile.Close()
		}
		f.logFile = file
	}
	return ok()
}

func (f *fake) putMetrics(body []byte) answer {
	if f.state != stateNotStarted {
		return fault(notAfterBoot)
	}
	var m metricsConfig
	if err := validate(f.defs, "Metrics", body, &m); err != nil {
		return serdeFault(err)
	}
	if f.metrics != nil {
		return fault("Metrics error: Reinitialization of metrics not allowed.")
	}
	file, err := os.OpenFile(f.in(m.MetricsPath), os.O_RDWR|os.O_CREATE|unix.O_NONBLOCK, 0o644)
	if err != nil {
		return fault("Metrics error: Failed to open target file: %v", err)
	}
	f.metrics = file
	return ok()
}

// checkMachine applies Firecracker's rules beyond the schema.
func checkMachine(m machineConfig) (answer, bool) {
	if m.MemSizeMiB == 0 || m.HugePages == "2M" && m.MemSizeMiB%2 != 0 {
		return fault("Machine config error: The memory size (MiB) is either 0, or not a multiple of the configured page size."), false
	}
	if m.SMT && m.VCPUCount > 1 && m.VCPUCount%2 == 1 {
		return fault("Machine config error: The number of vCPUs must be greater than 0, less than 32 and must be 1 or an even number if SMT is enabled."), false
	}
	return answer{}, true
}

func (f *fake) putMachineConfig(body []byte) answer {
	if r, ok := f.preBoot(); !ok {
		return r
	}
	var m machineConfig
	if err := validate(f.defs, "MachineConfiguration", body, &m); err != nil {
		return serdeFault(err)
	}
	if r, ok := checkMachine(m); !ok {
		return r
	}
	f.vm.Machine = m // a PUT resets what it leaves out
	f.configured = true
	return ok()
}

func (f *fake) patchMachineConfig(body []byte) answer {
	if r, ok := f.preBoot(); !ok {
		return r
	}
	var u machineUpdate
	if err := validate(f.defs, "MachineConfigurationUpdate", body, &u); err != nil {
		return serdeFault(err)
	}
	m := f.vm.Machine
	setIf(&m.VCPUCount, u.VCPUCount)
	setIf(&m.MemSizeMiB, u.MemSizeMiB)
	setIf(&m.SMT, u.SMT)
	setIf(&m.TrackDirtyPages, u.TrackDirtyPages)
	setIf(&m.HugePages, u.HugePages)
	setIf(&m.CPUTemplate, u.CPUTemplate)
	if r, ok := checkMachine(m); !ok {
		return r
	}
	f.vm.Machine = m
	f.configured = true
	return ok()
}

func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func (f *fake) putNIC(id string, body []byte) answer {
	if r, ok := checkedID(id); !ok {
		return r
	}
	if r, ok := f.preBoot(); !ok {
		return r
	}
	var n nic
	if err := validate(f.defs, "NetworkInterface", body, &n); err != nil {
		return serdeFault(err)
	}
	if n.IfaceID != id {
		return fault("The id from the path [%s] does not match the id from the body [%s]!", id, n.IfaceID)
	}
	if n.GuestMAC != "" {
		hw, err := net.ParseMAC(n.GuestMAC)
		if err != nil || len(hw) != 6 || len(n.GuestMAC) != 17 {
			return serdeFault(fmt.Errorf("invalid MAC address %q", n.GuestMAC))
		}
	}
	for _, o := range f.vm.Network {
		if o.IfaceID == id {
			continue
		}
		if n.GuestMAC != "" && strings.EqualFold(o.GuestMAC, n.GuestMAC) {
			return fault("Network config error: The MAC address is already in use: %s", n.GuestMAC)
		}
		if o.HostDevName == n.HostDevName {
			return fault("Network config error: Could not create the network device: Open tap device failed: Resource busy (os error 16). Invalid TUN/TAP Backend provided by %s. Check our documentation on setting up the network devices.", n.HostDevName)
		}
	}
	if len(n.HostDevName) > unix.IFNAMSIZ-1 {
		return fault("Network config error: Could not create the network device: Open tap device failed: Error while creating ifreq structure: Interface name too long. Invalid TUN/TAP Backend provided by %s.", n.HostDevName)
	}
	if f.cfg.OpenTaps {
		tap, err := openTap(n.HostDevName)
		if err != nil {
			return fault("Network config error: Could not create the network device: Open tap device failed: %v. Invalid TUN/TAP Backend provided by %s. Check our documentation on setting up the network devices.", err, n.HostDevName)
		}
		if old := f.taps[id]; old != nil {
			old.Close()
		}
		f.taps[id] = tap
	}
	if at := slices.IndexFunc(f.vm.Network, func(x nic) bool { return x.IfaceID == id }); at >= 0 {
		f.vm.Network[at] = n
	} else {
		f.vm.Network = append(f.vm.Network, n)
	}
	f.configured = true
	return ok()
}

// openTap attaches to a tap the way Firecracker does.
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "tap:"+name), nil
}

func (f *fake) patchNIC(id string, body []byte) answer {
	if r, ok := checkedID(id); !ok {
		return r
	}
	if r, ok := f.postBoot(); !ok {
		return r
	}
	var n struct {
		IfaceID string `json:"iface_id"`
	}
	if err := validate(f.defs, "PartialNetworkInterface", body, &n); err != nil {
		return serdeFault(err)
	}
	if n.IfaceID != id {
		return fault("The id from the path [%s] does not match the id from the body [%s]!", id, n.IfaceID)
	}
	if !slices.ContainsFunc(f.vm.Network, func(x nic) bool { return x.IfaceID == id }) {
		return fault("Network config error: Could not find the network interface %s", id)
	}
	return ok()
}

func (f *fake) putVsock(body []byte) answer {
	if r, ok := f.preBoot(); !ok {
		return r
	}
	var v vsockConfig
	if err := validate(f.defs, "Vsock", body, &v); err != nil {
		return serdeFault(err)
	}
	if err := f.bindVsock(v.UDSPath); err != nil {
		return fault("Vsock config error: Cannot create backend for vsock device: Error binding to the host-side Unix socket: %v", err)
	}
	f.vm.Vsock = &v
	f.configured = true
	return ok()
}

func (f *fake) putEntropy(body []byte) answer {
	if r, ok := f.preBoot(); !ok {
		return r
	}
	if err := validate(f.defs, "EntropyDevice", body, nil); err != nil {
		return serdeFault(err)
	}
	f.vm.Entropy = &struct{}{}
	f.configured = true
	return ok()
}

func (f *fake) patchVM(body []byte) answer {
	if r, ok := f.postBoot(); !ok {
		return r
	}
	var v struct {
		State string `json:"state"`
	}
	if err := validate(f.defs, "Vm", body, &v); err != nil {
		return serdeFault(err)
	}
	switch {
	case v.State == "Paused":
		f.state = statePaused
		f.guest.signal(unix.SIGSTOP)
	case f.guest == nil: // restored without resume_vm: first resume
		if err := f.startGuest(); err != nil {
			return fault("Vm state error: %v", err)
		}
	default:
		f.state = stateRunning
		f.guest.signal(unix.SIGCONT)
	}
	return ok()
}

func (f *fake) putSnapshotCreate(body []byte) answer {
	if r, ok := f.postBoot(); !ok {
		return r
	}
	var s snapshotCreate
	if err := validate(f.defs, "SnapshotCreateParams", body, &s); err != nil {
		return serdeFault(err)
	}
	if f.state != statePaused {
		return fault("Create snapshot error: Cannot save the microVM state: the microVM must be paused first (PATCH /vm {\"state\": \"Paused\"})")
	}
	if s.SnapshotType == "Diff" && !f.vm.Machine.TrackDirtyPages {
		return fault("Create snapshot error: Diff snapshots require track_dirty_pages in the machine configuration")
	}
	state, _ := json.Marshal(f.vm)
	if err := os.WriteFile(f.in(s.SnapshotPath), state, 0o600); err != nil {
		return fault("Create snapshot error: Cannot save the microVM state: %v", err)
	}
	mem, err := os.OpenFile(f.in(s.MemFilePath), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err == nil {
		err = mem.Truncate(int64(f.vm.Machine.MemSizeMiB) << 20)
		mem.Close()
	}
	if err != nil {
		return fault("Create snapshot error: Cannot write the guest memory: %v", err)
	}
	return ok()
}

func (f *fake) putSnapshotLoad(body []byte) answer {
	if r, ok := f.preBoot(); !ok {
		return r
	}
	if f.configured {
		return fault("Load snapshot error: Loading a microVM snapshot not allowed after configuring boot-specific resources.")
	}
	var s snapshotLoad
	if err := validate(f.defs, "SnapshotLoadParams", body, &s); err != nil {
		return serdeFault(err)
	}
	mem := s.MemFilePath
	switch {
	case mem != "" && s.MemBackend != nil:
		return serdeFault(fmt.Errorf("too many fields: either `mem_backend` or `mem_file_path` exclusively is required"))
	case mem == "" && s.MemBackend == nil:
		return serdeFault(fmt.Errorf("missing field: either `mem_backend` or `mem_file_path` is required"))
	case s.MemBackend != nil && s.MemBackend.BackendType != "File":
		return fault("fake firecracker: Uffd memory backends are not emulated")
	case s.MemBackend != nil:
		mem = s.MemBackend.BackendPath
	}
	b, err := os.ReadFile(f.in(s.SnapshotPath))
	var vm vmConfig
	if err == nil {
		err = json.Unmarshal(b, &vm)
	}
	if err != nil {
		return fault("Load snapshot error: Cannot load snapshot state: %v", err)
	}
	if _, err := os.Stat(f.in(mem)); err != nil {
		return fault("Load snapshot error: Cannot load the guest memory: %v", err)
	}
	for _, d := range vm.Drives {
		if err := openDisk(f.in(*d.PathOnHost), *d.IsReadOnly); err != nil {
			return fault("Load snapshot error: Cannot restore devices: %v", err)
		}
	}
	for _, o := range s.NetworkOverrides {
		at := slices.IndexFunc(vm.Network, func(x nic) bool { return x.IfaceID == o.IfaceID })
		if at < 0 {
			return fault("Load snapshot error: Invalid network override: no interface %s in the snapshot", o.IfaceID)
		}
		vm.Network[at].HostDevName = o.HostDevName
	}
	if s.VsockOverride != nil {
		if vm.Vsock == nil {
			return fault("Load snapshot error: Invalid vsock override: the snapshot has no vsock device")
		}
		vm.Vsock.UDSPath = s.VsockOverride.UDSPath
	}
	if vm.Vsock != nil {
		if err := f.bindVsock(vm.Vsock.UDSPath); err != nil {
			return fault("Load snapshot error: Cannot restore devices: vsock: %v", err)
		}
	}
	f.vm = vm
	f.configured = true
	f.state = statePaused
	if s.ResumeVM {
		if err := f.startGuest(); err != nil {
			return fault("Load snapshot error: %v", err)
		}
	}
	return ok()
}

// kernelProblem says why Firecracker (up to 1.16.1 on x86_64, which loads
// only ELF vmlinux images) would not load the kernel, or "".
func kernelProblem(path string) string {
	ef, err := elf.Open(path)
	if err != nil {
		return "Cannot load kernel due to invalid memory configuration or invalid kernel image: Kernel Loader: failed to load ELF kernel image"
	}
	defer ef.Close()
	if ef.Class != elf.ELFCLASS64 || ef.Machine != elf.EM_X86_64 {
		return "Cannot load kernel due to invalid memory configuration or invalid kernel image: Kernel Loader: the ELF kernel image is not for x86_64"
	}
	return ""
}

// cmdlineMax is the kernel command line Firecracker accepts on x86_64.
const cmdlineMax = 2048

func (f *fake) checkBoot() error {
	b := f.vm.BootSource
	if b == nil {
		return fmt.Errorf("Cannot start microvm without kernel configuration.")
	}
	if p := kernelProblem(f.in(b.KernelImagePath)); p != "" {
		return fmt.Errorf("%s", p)
	}
	args := defaultBootArgs
	if b.BootArgs != nil {
		args = *b.BootArgs
	}
	// Firecracker appends one virtio_mmio.device= per device (before 1.8)
	// and a root= for a root drive.
	n := len(args) + (len(f.vm.Drives)+len(f.vm.Network)+1)*len(" virtio_mmio.device=4K@0xc0001000:5")
	if n >= cmdlineMax {
		return fmt.Errorf("Kernel command line error: the command line with Firecracker's additions is %d bytes, over the limit of %d", n, cmdlineMax)
	}
	return nil
}
