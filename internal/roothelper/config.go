package roothelper

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"

	"github.com/banger/banger/internal/paths"
)

// Config is everything the helper needs; main fills it from install.toml
// and the configuration.
type Config struct {
	// OwnerUID/OwnerGID are the owner daemon's user: the only caller
	// besides root, and the owner of every tap.
	OwnerUID, OwnerGID int
	// Layout holds banger's directories, the only paths any operation may
	// touch. HelperDir also keeps the helper's own records.
	Layout paths.Layout
	// Bridge is the configured bridge name, e.g. "banger0".
	Bridge string
	// CIDR is the bridge address and prefix, e.g. 172.16.0.1/24.
	CIDR netip.Prefix
	// NetNS, when set, is the path of a network namespace file (e.g.
	// /run/netns/NAME) that every network operation acts in instead of the
	// helper's own namespace. Tests and the e2e harness use it so that no
	// bridge, tap or rule ever lands in the host's namespace.
	NetNS string
	Log   *slog.Logger
}

func (c Config) validate() error {
	if c.OwnerUID < 0 || c.OwnerGID < 0 {
		return fmt.Errorf("owner uid/gid %d/%d: must not be negative", c.OwnerUID, c.OwnerGID)
	}
	if err := ValidateBridge(c.Bridge); err != nil {
		return err
	}
	if err := validateCIDR(c.CIDR); err != nil {
		return err
	}
	for name, dir := range map[string]string{
		"state dir":   c.Layout.StateDir,
		"cache dir":   c.Layout.CacheDir,
		"runtime dir": c.Layout.RuntimeDir,
		"helper dir":  c.Layout.HelperDir,
	} {
		if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
			return fmt.Errorf("%s %q: must be an absolute, clean path", name, dir)
		}
	}
	if c.NetNS != "" && !filepath.IsAbs(c.NetNS) {
		return fmt.Errorf("netns %q: must be an absolute path", c.NetNS)
	}
	return nil
}

func (c Config) logger() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c.Log
}
