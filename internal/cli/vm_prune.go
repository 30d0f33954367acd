package cli

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/banger/banger/internal/api"
	"github.com/spf13/cobra"
)

func (a *App) vmPruneCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "prune [-f]",
		Short: "Delete every VM that is not running",
		Long:  "Delete every stopped, created or failed VM with its disks, after asking. Running VMs are kept.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			vms, err := a.Client().ListVMs(cmd.Context())
			if err != nil {
				return err
			}
			var doomed []string
			for _, v := range vms {
				if v.State != api.StateRunning {
					doomed = append(doomed, v.Name)
				}
			}
			if len(doomed) == 0 {
				fmt.Fprintln(a.Out, "nothing to prune: every VM is running")
				return nil
			}
			if !force {
				fmt.Fprintf(a.Err, "delete %d VM(s) and their disks: %s? [y/N] ", len(doomed), strings.Join(doomed, ", "))
				line, _ := bufio.NewReader(a.In).ReadString('\n')
				if ans := strings.ToLower(strings.TrimSpace(line)); ans != "y" && ans != "yes" {
					fmt.Fprintln(a.Err, "nothing deleted")
					return &ExitError{Code: 1}
				}
			}
			deleted, err := a.Client().PruneVMs(cmd.Context())
			for _, n := range deleted {
				fmt.Fprintf(a.Out, "%s deleted\n", n)
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not ask")
	return cmd
}
