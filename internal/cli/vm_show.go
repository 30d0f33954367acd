package cli

import (
	"fmt"
	"time"

	"github.com/banger/banger/internal/config"
	"github.com/spf13/cobra"
)

func (a *App) vmShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "show NAME",
		Short:             "Show a VM in full",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("vm"),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.Client().GetVM(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.Out, v)
			}
			t := newTable(a.Out)
			row := func(k, v string) { fmt.Fprintf(t, "%s\t%s\n", k, v) }
			row("name", v.Name)
			row("state", a.stateStyle(v.State))
			row("image", v.Image)
			row("kernel", v.Kernel)
			row("vcpu", fmt.Sprint(v.VCPU))
			row("memory", fmt.Sprintf("%d MiB", v.MemoryMiB))
			row("disk", config.FormatSize(v.DiskBytes))
			row("ip", v.IP.String())
			row("mac", v.MAC)
			row("tap", v.Tap)
			if v.Hypervisor != "" {
				row("hypervisor", v.Hypervisor)
			}
			if v.HypervisorReason != "" {
				row("why", v.HypervisorReason)
			}
			if v.PID != 0 {
				row("pid", fmt.Sprint(v.PID))
			}
			row("created", v.CreatedAt.Local().Format(time.RFC3339))
			if v.StartedAt != nil {
				row("started", v.StartedAt.Local().Format(time.RFC3339))
			}
			if v.LastError != "" {
				row("last error", v.LastError)
			}
			row("dir", v.Dir)
			row("console", v.ConsoleLog)
			return t.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
