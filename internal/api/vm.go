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
	PID        int        `json:"pid,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
	Dir        string     `json:"dir"`
	ConsoleLog string     `json:"console_log"`
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
}

// KillVM is the body of POST /v1/vms/{name}/kill.
type KillVM struct {
	Signal string `json:"signal,omitempty"`
}

// AgentUpgrade is the Upgrade protocol of POST /v1/vms/{name}/agent: after
// 101 the connection is a raw stream to the VM's agent, which speaks the
// agent's own HTTP protocol (internal/guest/agent).
const AgentUpgrade = "banger-agent/1"
