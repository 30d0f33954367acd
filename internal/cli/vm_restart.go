package cli

import "github.com/spf13/cobra"

func (a *App) vmRestartCmd() *cobra.Command {
	return a.vmActionCmd("restart", "Stop, then start VMs", "Stop each VM gracefully, then boot it again.")
}
