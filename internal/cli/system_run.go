package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/banger/banger/internal/install"
	"github.com/spf13/cobra"
)

func (a *App) systemRunCmd() *cobra.Command {
	var owner, binDir, netns string
	var allowRoot bool
	cmd := &cobra.Command{
		Use:   "run [--owner USER]",
		Short: "Run both daemons in the foreground, without systemd (needs sudo)",
		Long: `Run bangerd-root (as root) and bangerd (as the owner) in the foreground,
prefixing their logs, until interrupted. This is the way to run banger where
PID 1 is not systemd: containers, CI runners. Stopping it stops the daemons,
not the VMs; the next run adopts them.

The BANGER_*_DIR environment variables (see docs/internals.md) relocate every
directory, which is how the end-to-end tests run isolated daemons.`,
		Example: `  sudo banger system run --owner "$USER"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := a.installedOwner(owner, allowRoot)
			if err != nil {
				return err
			}
			if binDir == "" {
				exe, _ := os.Executable()
				exe, _ = filepath.EvalSymlinks(exe)
				binDir = filepath.Dir(exe)
			}
			return install.RunDirect(cmd.Context(), install.DirectOptions{
				Owner: o, Layout: a.Layout, BinDir: binDir, Log: a.Err, NetNS: netns,
				Ready: func() { fmt.Fprintf(a.Err, "banger: both daemons are ready (socket %s)\n", a.Layout.DaemonSocket()) },
			})
		},
	}
	cmd.Flags().StringVar(&owner, "owner", "", "user bangerd runs as (default: the installed owner, else $SUDO_USER)")
	cmd.Flags().BoolVar(&allowRoot, "allow-root", false, "allow root as the owner (root-only containers); bangerd then runs as root")
	cmd.Flags().StringVar(&netns, "netns", "", "keep the VMs' network in this namespace (from ip netns add): bangerd runs in it, bangerd-root makes bridges, taps and NAT there")
	cmd.Flags().StringVar(&binDir, "bin-dir", "", "directory holding bangerd and bangerd-root (default: beside this banger)")
	return cmd
}
