package cli

import "github.com/spf13/cobra"

func (a *App) vmStopCmd() *cobra.Command {
	return a.vmActionCmd("stop", "Stop VMs gracefully (sync, power off)",
		`Ask each guest to sync its disks and power off, and kill its VMM if it has not
stopped after 30 seconds. Files written before the stop are there after the
next start. Stopping a stopped VM does nothing.`)
}
