package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *App) kernelRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "rm NAME",
		Aliases:           []string{"remove", "delete"},
		Short:             "Remove a kernel (refused while VMs or images use it)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("kernel"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.Client().DeleteKernel(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.Out, "removed kernel %s\n", args[0])
			return nil
		},
	}
}
