package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// vmActionCmd builds start, stop, restart and kill: each takes one or more
// VM names and runs on them concurrently.
func (a *App) vmActionCmd(action, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:               action + " NAME...",
		Short:             short,
		Long:              long,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.completeNames("vm"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.eachVM(cmd.Context(), args, func(ctx context.Context, name string) error {
				v, err := a.Client().VMAction(ctx, name, action, a.stageProgress())
				if err != nil {
					return err
				}
				fmt.Fprintf(a.Out, "%s %s\n", v.Name, v.State)
				return nil
			})
		},
	}
}

func (a *App) vmStartCmd() *cobra.Command {
	return a.vmActionCmd("start", "Boot stopped VMs and wait until they answer",
		"Boot each named VM and wait until its agent answers. Starting a running VM does nothing.")
}
