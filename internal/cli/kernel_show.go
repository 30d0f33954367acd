package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *App) kernelShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "show NAME",
		Short:             "Show a kernel in full",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("kernel"),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := a.Client().GetKernel(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.Out, k)
			}
			yesNo := map[bool]string{true: "yes", false: "no"}
			t := newTable(a.Out)
			row := func(k, v string) { fmt.Fprintf(t, "%s\t%s\n", k, v) }
			row("name", k.Name)
			row("version", k.Version)
			row("source", k.Source)
			row("created", k.Created.Local().Format(time.RFC3339))
			row("vmlinux", fmt.Sprintf("%s (%s, sha256 %s)", k.Vmlinux, humanSize(k.VmlinuxSize), k.VmlinuxSHA256))
			if k.Vmlinuz != "" {
				row("vmlinuz", fmt.Sprintf("%s (%s)", k.Vmlinuz, humanSize(k.VmlinuzSize)))
			}
			if k.HasModules {
				row("modules", humanSize(k.ModulesSize))
			} else {
				row("modules", "none (drivers built in)")
			}
			row("config", yesNo[k.HasConfig])
			row("mmio cmdline devices", yesNo[k.MMIOCmdlineDevices])
			row("used by", orDash(k.UsedBy...))
			row("dir", k.Dir)
			return t.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
