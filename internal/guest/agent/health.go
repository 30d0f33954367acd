package agent

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Health is the answer of GET /v1/health.
type Health struct {
	Ready         bool    `json:"ready"`
	BootID        string  `json:"boot_id"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	AgentVersion  string  `json:"agent_version"`
	Hostname      string  `json:"hostname"`
	// SystemdState is `systemctl is-system-running` ("running",
	// "degraded", "starting", ...), or "" without systemctl.
	SystemdState string `json:"systemd_state"`
}

func (a *Agent) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.health(r.Context()))
}

func (a *Agent) health(ctx context.Context) Health {
	h := Health{
		Ready:        true,
		BootID:       a.readProc("sys/kernel/random/boot_id"),
		AgentVersion: a.version,
		Hostname:     a.readProc("sys/kernel/hostname"),
		SystemdState: a.systemdState(ctx),
	}
	if f := strings.Fields(a.readProc("uptime")); len(f) > 0 {
		h.UptimeSeconds, _ = strconv.ParseFloat(f[0], 64)
	}
	return h
}

func (a *Agent) readProc(name string) string {
	b, err := os.ReadFile(filepath.Join(a.proc, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (a *Agent) systemdState(ctx context.Context) string {
	bin, err := exec.LookPath(a.systemctl)
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// A non-zero exit is normal here ("degraded", "starting"); the answer
	// is what it printed.
	out, _ := exec.CommandContext(ctx, bin, "is-system-running").Output()
	state, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return state
}
