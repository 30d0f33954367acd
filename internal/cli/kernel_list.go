package cli

import (
	"fmt"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/spf13/cobra"
)

func (a *App) kernelListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the kernels in the store",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ks, err := a.Client().ListKernels(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if ks == nil {
					ks = []api.Kernel{}
				}
				return writeJSON(a.Out, ks)
			}
			now := time.Now()
			t := newTable(a.Out)
			fmt.Fprintln(t, "NAME\tVERSION\tVMLINUX\tMODULES\tCREATED\tUSED BY")
			for _, k := range ks {
				mods := "-"
				if k.HasModules {
					mods = humanSize(k.ModulesSize)
				}
				fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\n", k.Name, k.Version, humanSize(k.VmlinuxSize), mods, age(k.Created, now), orDash(k.UsedBy...))
			}
			return t.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
