package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/banger/banger/internal/atomicfile"
	"github.com/banger/banger/internal/paths"
	"github.com/banger/banger/internal/sshkeys"
	"github.com/spf13/cobra"
)

func (a *App) sshConfigCmd() *cobra.Command {
	var install, uninstall bool
	cmd := &cobra.Command{
		Use:   "ssh-config [--install | --uninstall]",
		Short: "Let plain ssh reach VMs as NAME.vm",
		Long: `Write ~/.config/banger/ssh_config, a "Host *.vm" block with banger's key, its
known_hosts and a ProxyCommand through banger, so that "ssh NAME.vm" (and scp,
rsync, git, editors' remote modes) reach a running VM.

With no flag, print the Include line to add at the top of ~/.ssh/config.
--install adds it there inside a "# >>> banger >>>" block (creating the file
if needed); --uninstall removes exactly that block. banger changes nothing
else in ~/.ssh/config.`,
		Example: `  banger ssh-config --install
  ssh dev.vm`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			userSSH := filepath.Join(a.Home, ".ssh", "config")
			shown := "~/.ssh/config"
			if uninstall {
				changed, err := sshkeys.UninstallInclude(userSSH)
				if err != nil {
					return err
				}
				if changed {
					fmt.Fprintf(a.Out, "removed banger's Include from %s\n", shown)
				} else {
					fmt.Fprintf(a.Out, "%s has no banger block; nothing to do\n", shown)
				}
				return nil
			}
			include, err := a.writeSSHConfig(cmd)
			if err != nil {
				return err
			}
			if !install {
				fmt.Fprintln(a.Out, include)
				fmt.Fprintf(a.Err, "Add that line at the top of %s (before any Host), or run: banger ssh-config --install\n", shown)
				return nil
			}
			changed, err := sshkeys.InstallInclude(userSSH, include)
			if err != nil {
				return err
			}
			if changed {
				fmt.Fprintf(a.Out, "added %q to %s (banger ssh-config --uninstall removes it)\n", include, shown)
			} else {
				fmt.Fprintf(a.Out, "%s already includes banger's ssh config\n", shown)
			}
			fmt.Fprintln(a.Out, "ssh NAME.vm now reaches a running VM")
			return nil
		},
	}
	cmd.Flags().BoolVar(&install, "install", false, "add the Include to ~/.ssh/config")
	cmd.Flags().BoolVar(&uninstall, "uninstall", false, "remove banger's Include from ~/.ssh/config")
	cmd.MarkFlagsMutuallyExclusive("install", "uninstall")
	return cmd
}

// writeSSHConfig (re)writes ~/.config/banger/ssh_config from the daemon's
// key and known_hosts paths and returns the Include line for it.
func (a *App) writeSSHConfig(cmd *cobra.Command) (string, error) {
	p, err := a.Client().SSHPaths(cmd.Context())
	if err != nil {
		return "", err
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the banger binary for ProxyCommand: %w", err)
	}
	data, err := sshkeys.UserConfig{KeyPath: p.KeyPath, KnownHosts: p.KnownHosts, Banger: self}.Render()
	if err != nil {
		return "", err
	}
	u := paths.User{Home: a.Home}
	if err := os.MkdirAll(u.ConfigDir(), 0o755); err != nil {
		return "", fmt.Errorf("write %s: %w", u.SSHConfig(), err)
	}
	if err := atomicfile.Write(u.SSHConfig(), data, 0o644); err != nil {
		return "", err
	}
	return sshkeys.IncludeLine(u.SSHConfig(), a.Home), nil
}
