package cli

import (
	"github.com/banger/banger/internal/install"
	"github.com/spf13/cobra"
)

func (a *App) systemInstallCmd() *cobra.Command {
	var owner string
	var allowRoot bool
	cmd := &cobra.Command{
		Use:   "install --owner USER",
		Short: "Install the binaries and start both services (needs sudo)",
		Long: `Copy banger, bangerd and bangerd-root to /usr/local/bin and banger-agent to
/usr/local/lib/banger, write /etc/banger/install.toml, write and start the
bangerd-root.service and bangerd.service units, and wait until bangerd answers.
Running it again upgrades in place and restarts the services; running VMs
survive the restart.

USER is the account bangerd runs as and the only non-root user allowed to use
banger's sockets. It defaults to $SUDO_USER.`,
		Example: `  sudo banger system install --owner "$USER"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := a.installedOwner(owner, allowRoot)
			if err != nil {
				return err
			}
			return install.Install(cmd.Context(), a.installOptions(o))
		},
	}
	cmd.Flags().StringVar(&owner, "owner", "", "user that owns and runs banger (default $SUDO_USER)")
	cmd.Flags().BoolVar(&allowRoot, "allow-root", false, "allow root as the owner (root-only containers); bangerd then runs as root")
	return cmd
}
