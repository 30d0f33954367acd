package cli

import (
	"fmt"

	"github.com/banger/banger/internal/api"
	"github.com/spf13/cobra"
)

func (a *App) vmPortsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "ports NAME",
		Short:             "List what listens in a running VM, and how to reach it",
		Long:              "List the guest's listening TCP and UDP sockets (asked from its agent) with the NAME.vm:PORT the host reaches them at.",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("vm"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ps, err := a.Client().VMPorts(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				if ps == nil {
					ps = []api.Port{}
				}
				return writeJSON(a.Out, ps)
			}
			t := newTable(a.Out)
			fmt.Fprintln(t, "PROTO\tADDRESS\tPORT\tPROCESS\tREACH")
			for _, p := range ps {
				fmt.Fprintf(t, "%s\t%s\t%d\t%s\t%s\n", p.Proto, p.Address, p.Port, p.Process, p.Reach)
			}
			return t.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
