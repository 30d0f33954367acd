package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/banger/banger/internal/buildinfo"
	"github.com/spf13/cobra"
)

func (a *App) versionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the CLI's and the daemon's versions",
		Long: `Print the version of this banger CLI and of the running bangerd. When the two
differ, say so: after an upgrade the daemon must be restarted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			cli := buildinfo.Get()
			dv, derr := a.Client().Version(ctx)
			if asJSON {
				out := map[string]any{"cli": cli}
				if derr == nil {
					out["daemon"] = dv
				} else {
					out["daemon_error"] = derr.Error()
				}
				return writeJSON(a.Out, out)
			}
			fmt.Fprintf(a.Out, "banger   %s\n", cli.String())
			if derr != nil {
				fmt.Fprintf(a.Out, "bangerd  %s\n", a.style.Warn("not reachable: "+derr.Error()))
				return nil
			}
			d := buildinfo.Info{Version: dv.Version, Commit: dv.Commit, Date: dv.Date}
			fmt.Fprintf(a.Out, "bangerd  %s\n", d.String())
			switch {
			case dv.APIVersion != cli.APIVersion:
				fmt.Fprintf(a.Out, "%s the CLI speaks API v%d and bangerd v%d: use matching versions\n", a.style.Fail("mismatch:"), cli.APIVersion, dv.APIVersion)
			case dv.Version != cli.Version:
				fmt.Fprintf(a.Out, "%s CLI and daemon versions differ; after upgrading, run: sudo banger system restart\n", a.style.Warn("note:"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
