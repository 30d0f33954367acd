package agent

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// ShutdownRequest is the body of POST /v1/shutdown.
type ShutdownRequest struct {
	Reboot bool `json:"reboot,omitempty"`
}

func (a *Agent) handleShutdown(w http.ResponseWriter, r *http.Request) {
	var req ShutdownRequest
	if err := decodeJSON(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, req)
	// The answer must be on its way before the guest starts going down.
	http.NewResponseController(w).Flush()
	a.log.Info("shutdown requested", "reboot", req.Reboot)
	go func() {
		if err := a.powerOff(context.WithoutCancel(r.Context()), req.Reboot); err != nil {
			a.log.Error("shutdown", "reboot", req.Reboot, "err", err)
		}
	}()
}

// realPowerOff syncs, then lets systemd stop the guest cleanly when it is
// PID 1, and otherwise asks the kernel directly.
func (a *Agent) realPowerOff(ctx context.Context, reboot bool) error {
	unix.Sync()
	verb, cmd := "poweroff", unix.LINUX_REBOOT_CMD_POWER_OFF
	if reboot {
		verb, cmd = "reboot", unix.LINUX_REBOOT_CMD_RESTART
	}
	if a.readProc("1/comm") == "systemd" {
		bin, err := exec.LookPath(a.systemctl)
		if err == nil {
			out, err := exec.CommandContext(ctx, bin, verb).CombinedOutput()
			if err == nil {
				return nil
			}
			a.log.Warn("systemctl failed, asking the kernel", "verb", verb, "err", err, "output", string(out))
		}
	}
	// Give the 202 a moment to leave the guest: reboot(2) does not wait.
	time.Sleep(200 * time.Millisecond)
	unix.Sync()
	if err := unix.Reboot(cmd); err != nil {
		return fmt.Errorf("reboot(2) %s: %w", verb, err)
	}
	return nil
}
