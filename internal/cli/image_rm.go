package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *App) imageRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:               "rm NAME",
		Aliases:           []string{"remove", "delete"},
		Short:             "Remove a local image (refused while VMs use it; its kernel stays)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("image"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.Client().DeleteImage(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.Out, "removed image %s\n", args[0])
			return nil
		},
	}
}
