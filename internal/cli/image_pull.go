package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *App) imagePullCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pull [NAME]",
		Short: "Make an image local (the default one is built here, once)",
		Long: `Make an image local. NAME defaults to default_image_name from the config
(debian-bookworm). The default image is built on this host the first time,
from Debian packages, by the root helper: a few minutes, with progress; later
pulls, and VMs, find it at once.`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: a.completeNames("image"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := a.pullName(args)
			if err != nil {
				return err
			}
			start := time.Now()
			event, done := a.progress()
			img, err := a.Client().PullImage(cmd.Context(), name, event)
			done()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Out, "image %s ready (kernel %s, rootfs %s) in %s\n", img.Name, img.Kernel, humanSize(img.SizeBytes), elapsed(time.Since(start)))
			return nil
		},
	}
}

// pullName is the image to pull: the argument, else the config's default.
func (a *App) pullName(args []string) (string, error) {
	if len(args) == 1 {
		return args[0], nil
	}
	cfg, err := a.config()
	if err != nil {
		return "", err
	}
	return cfg.DefaultImage, nil
}
