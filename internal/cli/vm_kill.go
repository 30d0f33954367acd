package cli

import "github.com/spf13/cobra"

func (a *App) vmKillCmd() *cobra.Command {
	return a.vmActionCmd("kill", "Stop VMs at once, without asking the guest",
		"Kill each VM's VMM immediately. Writes the guest had not synced are lost; prefer vm stop.")
}
