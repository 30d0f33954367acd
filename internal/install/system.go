package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/atomicfile"
	"github.com/banger/banger/internal/buildinfo"
	"github.com/banger/banger/internal/command"
	"github.com/banger/banger/internal/paths"
)

// Options describe one installation.
type Options struct {
	Owner  Owner
	Layout paths.Layout
	// SourceDir holds the freshly built binaries to install (the directory
	// of the running banger executable).
	SourceDir string
	BinDir    string
	UnitDir   string
	// Systemd says whether to write and start units (PID 1 is systemd).
	Systemd bool
	Out     io.Writer
	// Ready waits until the owner daemon answers; nil skips the wait.
	Ready func(ctx context.Context) error
}

func requireRoot(verb string) error {
	if os.Geteuid() != 0 {
		return api.WithHint(api.Errorf(api.CodeUnauthorized, "%s needs root", verb), "run it with sudo")
	}
	return nil
}

// binaries maps each installed binary to its destination directory.
func (o Options) binaries() map[string]string {
	return map[string]string{
		paths.CLIBinary:    o.BinDir,
		paths.DaemonBinary: o.BinDir,
		paths.HelperBinary: o.BinDir,
		paths.AgentBinary:  o.Layout.LibDir,
	}
}

// Install copies the binaries, writes install.toml and, on systemd hosts,
// writes, enables and (re)starts both units and waits for the daemon.
func Install(ctx context.Context, o Options) error {
	if err := requireRoot("system install"); err != nil {
		return err
	}
	for name, dir := range o.binaries() {
		src := filepath.Join(o.SourceDir, name)
		if err := copyExecutable(src, filepath.Join(dir, name)); err != nil {
			return api.WithHint(fmt.Errorf("install %s: %w", name, err), "build all four binaries first: make build")
		}
	}
	fmt.Fprintf(o.Out, "installed binaries into %s and %s\n", o.BinDir, o.Layout.LibDir)
	if err := os.MkdirAll(o.Layout.EtcDir, 0o755); err != nil {
		return err
	}
	info := buildinfo.Get()
	meta := Metadata{OwnerUser: o.Owner.User, OwnerUID: o.Owner.UID, OwnerGID: o.Owner.GID, OwnerHome: o.Owner.Home,
		Version: info.Version, Commit: info.Commit, InstalledAt: time.Now().UTC().Truncate(time.Second), Systemd: o.Systemd}
	if err := WriteMetadata(o.Layout.InstallFile(), meta); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "wrote %s (owner %s, uid %d)\n", o.Layout.InstallFile(), o.Owner.User, o.Owner.UID)
	if !o.Systemd {
		fmt.Fprintf(o.Out, "PID 1 is not systemd (a container?), so no units were installed;\n"+
			"running both daemons with `banger system run` instead (foreground alternative: sudo banger system run)\n")
		if err := stopDetached(o); err != nil {
			return err
		}
		return startDetached(ctx, o)
	}
	var groups []string
	if _, err := user.LookupGroup("kvm"); err == nil {
		groups = append(groups, "kvm")
	}
	units, err := Units(UnitOptions{BinDir: o.BinDir, Owner: o.Owner, Layout: o.Layout, ExtraGroups: groups})
	if err != nil {
		return err
	}
	for name, text := range units {
		if err := atomicfile.Write(filepath.Join(o.UnitDir, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.Out, "wrote %s and %s in %s\n", paths.HelperUnit, paths.DaemonUnit, o.UnitDir)
	if err := command.Run(ctx, "systemctl", "daemon-reload"); err != nil {
		return err
	}
	if err := command.Run(ctx, "systemctl", "enable", paths.HelperUnit, paths.DaemonUnit); err != nil {
		return err
	}
	return Restart(ctx, o)
}

// Restart restarts the helper, then the daemon, and waits until the daemon
// answers: with Type=simple, systemctl returns before the socket exists.
func Restart(ctx context.Context, o Options) error {
	if err := requireRoot("system restart"); err != nil {
		return err
	}
	if !o.Systemd {
		if err := stopDetached(o); err != nil {
			return err
		}
		return startDetached(ctx, o)
	}
	for _, u := range []string{paths.HelperUnit, paths.DaemonUnit} {
		if err := command.Run(ctx, "systemctl", "restart", u); err != nil {
			return api.WithHint(err, "see: journalctl -u "+u)
		}
	}
	fmt.Fprintf(o.Out, "restarted %s and %s\n", paths.HelperUnit, paths.DaemonUnit)
	if o.Ready == nil {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := o.Ready(wctx); err != nil {
		return api.WithHint(fmt.Errorf("bangerd did not answer after restart: %w", err), "see: journalctl -u bangerd -u bangerd-root")
	}
	fmt.Fprintln(o.Out, "bangerd is ready")
	return nil
}

// UninstallOptions add what uninstall needs beyond Options.
type UninstallOptions struct {
	Options
	Purge bool
	// Cleanup removes the host network state the helper made (bridge,
	// taps, NAT); it runs `bangerd-root --cleanup`.
	Cleanup func(ctx context.Context) error
}

// Uninstall stops and removes the units and binaries. With Purge it also
// removes banger's state, cache and runtime directories. It never touches
// the owner's home (config, keys) nor the system config.toml. It goes on
// past errors and reports them all.
func Uninstall(ctx context.Context, o UninstallOptions) error {
	if err := requireRoot("system uninstall"); err != nil {
		return err
	}
	var errs []error
	if o.Systemd {
		for _, u := range []string{paths.DaemonUnit, paths.HelperUnit} {
			if err := command.Run(ctx, "systemctl", "disable", "--now", u); err != nil && !strings.Contains(err.Error(), "not loaded") && !strings.Contains(err.Error(), "does not exist") {
				errs = append(errs, err)
			}
		}
	}
	if !o.Systemd {
		if err := stopDetached(o.Options); err != nil {
			errs = append(errs, err)
		}
	}
	if o.Cleanup != nil {
		if err := o.Cleanup(ctx); err != nil {
			errs = append(errs, fmt.Errorf("clean host network: %w", err))
		}
	}
	var removed []string
	remove := func(p string) {
		if err := os.Remove(p); err == nil {
			removed = append(removed, p)
		} else if !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if o.Systemd {
		for _, u := range []string{paths.DaemonUnit, paths.HelperUnit} {
			remove(filepath.Join(o.UnitDir, u))
		}
		if err := command.Run(ctx, "systemctl", "daemon-reload"); err != nil {
			errs = append(errs, err)
		}
	}
	for name, dir := range o.binaries() {
		remove(filepath.Join(dir, name))
	}
	os.Remove(o.Layout.LibDir) // only if empty
	remove(o.Layout.InstallFile())
	os.Remove(o.Layout.EtcDir) // only if empty: config.toml stays
	if o.Purge {
		for _, d := range []string{o.Layout.StateDir, o.Layout.CacheDir, o.Layout.RuntimeDir, o.Layout.HelperDir} {
			if _, err := os.Lstat(d); err == nil {
				if err := os.RemoveAll(d); err != nil {
					errs = append(errs, err)
				} else {
					removed = append(removed, d)
				}
			}
		}
	}
	sort.Strings(removed)
	for _, p := range removed {
		fmt.Fprintf(o.Out, "removed %s\n", p)
	}
	if len(errs) == 0 {
		fmt.Fprintln(o.Out, "banger is uninstalled; your config and ssh keys under your home were left in place")
	}
	return errors.Join(errs...)
}

// copyExecutable installs src at dst atomically, so a running binary is
// never overwritten in place.
func copyExecutable(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if same(src, dst) {
		return nil
	}
	return atomicfile.Write(dst, b, 0o755)
}

func same(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// UnitState reports `systemctl is-active` for a unit ("active",
// "inactive", "failed", ...), or "unknown" when systemctl cannot tell.
func UnitState(ctx context.Context, unit string) string {
	out, _ := command.Output(ctx, "systemctl", "is-active", unit)
	if s := strings.TrimSpace(string(out)); s != "" {
		return s
	}
	return "unknown"
}
