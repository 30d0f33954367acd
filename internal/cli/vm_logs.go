package cli

import "github.com/spf13/cobra"

func (a *App) vmLogsCmd() *cobra.Command {
	var follow bool
	var lines int
	cmd := &cobra.Command{
		Use:               "logs NAME [-f] [-n LINES]",
		Short:             "Print a VM's serial console",
		Long:              "Print the VM's serial console log (kernel, init and systemd messages). -f keeps following it.",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("vm"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.Client().VMLogs(cmd.Context(), args[0], lines, follow, a.Out)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing what the console writes")
	cmd.Flags().IntVarP(&lines, "lines", "n", 0, "print only the last LINES lines first (0: all)")
	return cmd
}
