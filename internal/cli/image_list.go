package cli

import (
	"fmt"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/spf13/cobra"
)

func (a *App) imageListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the local images",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			imgs, err := a.Client().ListImages(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				if imgs == nil {
					imgs = []api.Image{}
				}
				return writeJSON(a.Out, imgs)
			}
			now := time.Now()
			t := newTable(a.Out)
			fmt.Fprintln(t, "NAME\tKERNEL\tROOTFS\tWORK SEED\tCREATED\tUSED BY")
			for _, img := range imgs {
				fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\n", img.Name, img.Kernel, humanSize(img.SizeBytes), humanSize(img.WorkSeedBytes), age(img.Created, now), orDash(img.UsedBy...))
			}
			return t.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
