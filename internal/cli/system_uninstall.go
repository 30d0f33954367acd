package cli

import (
	"github.com/banger/banger/internal/install"
	"github.com/banger/banger/internal/paths"
	"github.com/spf13/cobra"
)

func (a *App) systemUninstallCmd() *cobra.Command {
	var purge bool
	cmd := &cobra.Command{
		Use:   "uninstall [--purge]",
		Short: "Stop and remove the services and binaries (needs sudo)",
		Long: `Stop and remove both units and the installed binaries, and remove the bridge,
taps and NAT rules banger made. With --purge, also remove banger's state,
cache and runtime directories (/var/lib/banger, /var/cache/banger, /run/banger,
/run/banger-root): every VM, image and kernel.

Your config (~/.config/banger), your ssh keys (~/.local/state/banger) and
/etc/banger/config.toml are never removed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, _ := install.ReadMetadata(a.Layout.InstallFile())
			o := a.installOptions(install.Owner{User: m.OwnerUser, UID: m.OwnerUID, GID: m.OwnerGID, Home: m.OwnerHome})
			if m.OwnerUID != 0 {
				o.Systemd = m.Systemd
			}
			return install.Uninstall(cmd.Context(), install.UninstallOptions{Options: o, Purge: purge, Cleanup: a.helperCleanup(paths.BinDir)})
		},
	}
	cmd.Flags().BoolVar(&purge, "purge", false, "also remove all VMs, images, kernels and caches")
	return cmd
}
