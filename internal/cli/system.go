package cli

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/command"
	"github.com/banger/banger/internal/host"
	"github.com/banger/banger/internal/install"
	"github.com/banger/banger/internal/paths"
	"github.com/spf13/cobra"
)

func (a *App) systemCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "system",
		Short: "Install, inspect, restart or remove banger's two services",
		Long: `banger runs as two services: bangerd (the owner daemon, your user, never root)
and bangerd-root (a narrow privileged helper for bridges, taps and NAT).
install, restart and uninstall need root (sudo); status does not.

On hosts whose PID 1 is not systemd (containers, CI), 'system install' only
copies the binaries and 'sudo banger system run' runs both daemons in the
foreground.`,
	}
	cmd.AddCommand(a.systemInstallCmd(), a.systemStatusCmd(), a.systemRestartCmd(), a.systemUninstallCmd(), a.systemRunCmd())
	return cmd
}

// installOptions gathers what every system verb needs.
func (a *App) installOptions(owner install.Owner) install.Options {
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	return install.Options{
		Owner:     owner,
		Layout:    a.Layout,
		SourceDir: filepath.Dir(exe),
		BinDir:    paths.BinDir,
		UnitDir:   paths.UnitDir,
		Systemd:   host.SystemdIsPID1(),
		Out:       a.Out,
		Ready:     a.waitDaemon,
	}
}

// waitDaemon polls until bangerd answers or ctx ends.
func (a *App) waitDaemon(ctx context.Context) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := a.Client().Version(cctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// installedOwner reads the owner from install.toml, or from --owner /
// $SUDO_USER when given.
func (a *App) installedOwner(flag string, allowRoot bool) (install.Owner, error) {
	if flag == "" {
		if m, err := install.ReadMetadata(a.Layout.InstallFile()); err == nil {
			return install.Owner{User: m.OwnerUser, UID: m.OwnerUID, GID: m.OwnerGID, Home: m.OwnerHome}, nil
		}
		flag = os.Getenv("SUDO_USER")
	}
	if flag == "" {
		return install.Owner{}, api.WithHint(api.Errorf(api.CodeBadRequest, "no owner given and none installed"),
			`pass the user the daemon should run as: --owner "$USER"`)
	}
	return install.LookupOwner(flag, allowRoot)
}

// helperCleanup runs `bangerd-root --cleanup`, which removes the bridge,
// taps and NAT rules banger made.
func (a *App) helperCleanup(binDir string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		bin := filepath.Join(binDir, paths.HelperBinary)
		if _, err := os.Stat(bin); err != nil {
			return nil
		}
		_, err := command.Output(ctx, bin, "--cleanup")
		return err
	}
}
