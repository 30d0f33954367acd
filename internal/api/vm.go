package api

import (
	"net/netip"
	"time"
)

// VM states. "running" and the others are derived from the VMM process,
// never trusted from a stored record.
const (
	StateCreated = "created" // never started
	StateRunning = "running"
	StateStopped = "stopped"
	StateError   = "error" // the last start or run failed; LastError says why
)

// VM is a VM as the CLI sees it.
type VM struct {
	Name       string     `json:"name"`
	ID         string     `json:"id"`
	State      string     `json:"state"`
	Image      string     `json:"image"`
	Kernel     string     `json:"kernel"`
	VCPU       int        `json:"vcpu"`
	MemoryMiB  int        `json:"memory_mib"`
	DiskBytes  int64      `json:"disk_bytes"`
	IP         netip.Addr `json:"ip"`
	MAC        string     `json:"mac"`
	Tap        string     `json:"tap"`
	Hypervisor string     `json:"hypervisor,omitempty"`
	// HypervisorReason says why the daemon uses this hypervisor.
	HypervisorReason string     `json:"hypervisor_reason,omitempty"`
	PID              int        `json:"pid,omitempty"`
	CreatedAt        time.Time  `json:"created_at"`
	StartedAt        *time.Time `json:"started_at,omitempty"`
	LastError        string     `json:"last_error,omitempty"`
	Dir              string     `json:"dir"`
	ConsoleLog       string     `json:"console_log"`
	NAT              bool       `json:"nat"`
	// Forwards are the host-to-guest port forwards, "hostaddr:port:guestport".
	Forwards []string `json:"forwards,omitempty"`
}

// CreateVM is the body of POST /v1/vms. Pointers tell "not given" from 0:
// the CLI resolves defaults and sends explicit values, but the daemon
// validates again and fills what is missing.
type CreateVM struct {
	Name      string `json:"name,omitempty"`
	Image     string `json:"image,omitempty"`
	VCPU      *int   `json:"vcpu,omitempty"`
	MemoryMiB *int   `json:"memory_mib,omitempty"`
	DiskBytes *int64 `json:"disk_bytes,omitempty"`
	// NoStart creates the VM and its disks without booting it.
	NoStart bool `json:"no_start,omitempty"`
	NAT     bool `json:"nat,omitempty"`
	// Forwards are -p specs: "[hostaddr:]hostport:guestport".
	Forwards []string `json:"forwards,omitempty"`
}

// SetVM is the body of POST /v1/vms/{name}/set: changes to a stopped VM
// (NAT may change on a running one). Nil fields stay as they are.
type SetVM struct {
	VCPU      *int   `json:"vcpu,omitempty"`
	MemoryMiB *int   `json:"memory_mib,omitempty"`
	DiskBytes *int64 `json:"disk_bytes,omitempty"`
	NAT       *bool  `json:"nat,omitempty"`
}

// Port is one listening socket in a guest (GET /v1/vms/{name}/ports).
type Port struct {
	Proto   string `json:"proto"`
	Address string `json:"address"`
	Port    uint16 `json:"port"`
	Process string `json:"process,omitempty"`
	// Reach is how the host reaches it: "NAME.vm:PORT".
	Reach string `json:"reach"`
}

// VMStats answers GET /v1/vms/{name}/stats.
type VMStats struct {
	Name         string  `json:"name"`
	State        string  `json:"state"`
	CPUSeconds   float64 `json:"cpu_seconds"`    // VMM process CPU time
	RSSBytes     int64   `json:"rss_bytes"`      // VMM process resident memory
	LayerBytes   int64   `json:"layer_bytes"`    // allocated bytes of the writable layer
	WorkBytes    int64   `json:"work_bytes"`     // allocated bytes of the work disk
	UptimeSecond float64 `json:"uptime_seconds"` // since the VMM started
}

// KillVM is the body of POST /v1/vms/{name}/kill.
type KillVM struct {
	Signal string `json:"signal,omitempty"`
}

// AgentUpgrade is the Upgrade protocol of POST /v1/vms/{name}/agent: after
// 101 the connection is a raw stream to the VM's agent, which speaks the
// agent's own HTTP protocol (internal/guest/agent).
const AgentUpgrade = "banger-agent/1"
