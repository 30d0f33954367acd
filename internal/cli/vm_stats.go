package cli

import (
	"fmt"
	"time"

	"github.com/banger/banger/internal/config"
	"github.com/spf13/cobra"
)

func (a *App) vmStatsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "stats NAME",
		Short:             "Show a VM's CPU, memory and disk use",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("vm"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.Client().VMStats(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.Out, s)
			}
			t := newTable(a.Out)
			fmt.Fprintf(t, "state\t%s\n", a.stateStyle(s.State))
			if s.UptimeSecond > 0 {
				fmt.Fprintf(t, "uptime\t%s\n", (time.Duration(s.UptimeSecond) * time.Second).Round(time.Second))
				fmt.Fprintf(t, "cpu time\t%.1fs\n", s.CPUSeconds)
				fmt.Fprintf(t, "memory (VMM RSS)\t%s\n", config.FormatSize(s.RSSBytes))
			}
			fmt.Fprintf(t, "writable layer\t%s used on the host\n", config.FormatSize(s.LayerBytes))
			fmt.Fprintf(t, "work disk\t%s used on the host\n", config.FormatSize(s.WorkBytes))
			return t.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
