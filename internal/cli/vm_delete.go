package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func (a *App) vmDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "delete NAME...",
		Aliases:           []string{"rm"},
		Short:             "Delete VMs and their disks (irreversible)",
		Long:              "Kill each VM if it runs and remove its disks, runtime files, tap and record. This cannot be undone.",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.completeNames("vm"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.eachVM(cmd.Context(), args, func(ctx context.Context, name string) error {
				if err := a.Client().DeleteVM(ctx, name); err != nil {
					return err
				}
				fmt.Fprintf(a.Out, "%s deleted\n", name)
				return nil
			})
		},
	}
}
