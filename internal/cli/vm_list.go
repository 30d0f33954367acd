package cli

import (
	"fmt"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/config"
	"github.com/spf13/cobra"
)

func (a *App) vmListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List VMs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			vms, err := a.Client().ListVMs(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if vms == nil {
					vms = []api.VM{}
				}
				return writeJSON(a.Out, vms)
			}
			t := newTable(a.Out)
			fmt.Fprintln(t, "NAME\tSTATE\tIMAGE\tIP\tVCPU\tMEMORY\tDISK")
			for _, v := range vms {
				fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%d\t%d MiB\t%s\n", v.Name, a.stateStyle(v.State), v.Image, v.IP, v.VCPU, v.MemoryMiB, config.FormatSize(v.DiskBytes))
			}
			return t.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *App) stateStyle(s string) string {
	switch s {
	case api.StateRunning:
		return a.style.Pass(s)
	case api.StateError:
		return a.style.Fail(s)
	}
	return s
}
