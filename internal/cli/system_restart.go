package cli

import (
	"github.com/banger/banger/internal/install"
	"github.com/spf13/cobra"
)

func (a *App) systemRestartCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "restart",
		Short: "Restart the helper, then the daemon, and wait until ready (needs sudo)",
		Long: `Restart bangerd-root, then bangerd, and wait until bangerd answers. Running VMs
keep running and are adopted by the restarted daemon.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := install.ReadMetadata(a.Layout.InstallFile())
			if err != nil {
				return err
			}
			o := a.installOptions(install.Owner{User: m.OwnerUser, UID: m.OwnerUID, GID: m.OwnerGID, Home: m.OwnerHome})
			o.Systemd = m.Systemd
			return install.Restart(cmd.Context(), o)
		},
	}
}
