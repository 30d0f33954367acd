package api

import (
	"encoding/json"
	"time"
)

// VersionInfo is one binary's build stamp on the wire.
type VersionInfo struct {
	Version    string `json:"version"`
	Commit     string `json:"commit,omitempty"`
	Date       string `json:"date,omitempty"`
	APIVersion int    `json:"api_version"`
}

// DaemonStatus answers GET /v1/status.
type DaemonStatus struct {
	Version   VersionInfo  `json:"version"`
	PID       int          `json:"pid"`
	UID       int          `json:"uid"`
	StartedAt time.Time    `json:"started_at"`
	Socket    string       `json:"socket"`
	StateDir  string       `json:"state_dir"`
	Helper    HelperStatus `json:"helper"`
}

// HelperStatus is what the daemon knows of the root helper.
type HelperStatus struct {
	Socket    string          `json:"socket"`
	Reachable bool            `json:"reachable"`
	Version   string          `json:"version,omitempty"`
	Error     string          `json:"error,omitempty"`
	Network   json.RawMessage `json:"network,omitempty"`
}

// Names answers GET /v1/names/{kind}: live names for shell completion.
type Names struct {
	Names []string `json:"names"`
}
