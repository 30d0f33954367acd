package cli

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *App) imageShowCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "show NAME",
		Short:             "Show an image in full",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeNames("image"),
		RunE: func(cmd *cobra.Command, args []string) error {
			img, err := a.Client().GetImage(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.Out, img)
			}
			t := newTable(a.Out)
			row := func(k, v string) { fmt.Fprintf(t, "%s\t%s\n", k, v) }
			row("name", img.Name)
			row("kernel", img.Kernel)
			row("source", img.Source)
			row("created", img.Created.Local().Format(time.RFC3339))
			row("rootfs", fmt.Sprintf("%s (%s)", img.RootFS, humanSize(img.SizeBytes)))
			row("work seed", fmt.Sprintf("%s (%s)", img.WorkSeed, humanSize(img.WorkSeedBytes)))
			// The builder's manifest, as far as a human wants it.
			var m struct {
				Suite         string            `json:"suite"`
				KernelVersion string            `json:"kernel_version"`
				BuildSeconds  float64           `json:"build_seconds"`
				Packages      map[string]string `json:"packages"`
				Mise          struct {
					Version string `json:"version"`
				} `json:"mise"`
			}
			if json.Unmarshal(img.Manifest, &m) == nil {
				if m.Suite != "" {
					row("suite", m.Suite)
				}
				if m.KernelVersion != "" {
					row("kernel version", m.KernelVersion)
				}
				if len(m.Packages) > 0 {
					row("packages", fmt.Sprint(len(m.Packages)))
				}
				if m.Mise.Version != "" {
					row("mise", m.Mise.Version)
				}
				if m.BuildSeconds > 0 {
					row("build time", elapsed(time.Duration(m.BuildSeconds*float64(time.Second))))
				}
			}
			row("used by", orDash(img.UsedBy...))
			row("dir", img.Dir)
			return t.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
