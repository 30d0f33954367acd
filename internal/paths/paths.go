// Package paths names every file and directory banger uses, in one place.
// docs/internals.md lists the same set; keep the two in step.
package paths

import (
	"os"
	"path/filepath"
)

// Environment variables that relocate banger's system directories. They exist
// for running the daemons outside systemd (containers, CI, the e2e harness);
// an installed system uses the defaults.
const (
	EnvStateDir   = "BANGER_STATE_DIR"
	EnvCacheDir   = "BANGER_CACHE_DIR"
	EnvRuntimeDir = "BANGER_RUNTIME_DIR"
	EnvHelperDir  = "BANGER_HELPER_DIR"
	EnvEtcDir     = "BANGER_ETC_DIR"
	EnvLibDir     = "BANGER_LIB_DIR"
)

// Layout is the set of system directories one banger installation uses.
type Layout struct {
	StateDir   string // durable records, images, kernels, VM disks (owner)
	CacheDir   string // re-creatable downloads and build caches (owner)
	RuntimeDir string // owner daemon socket and per-VM sockets (owner, 0700)
	HelperDir  string // root helper socket (root, 0711)
	EtcDir     string // install.toml and the system-wide config.toml (root)
	LibDir     string // banger-agent and other files shipped into guests
}

// Default is the layout of an installed system.
func Default() Layout {
	return Layout{
		StateDir:   "/var/lib/banger",
		CacheDir:   "/var/cache/banger",
		RuntimeDir: "/run/banger",
		HelperDir:  "/run/banger-root",
		EtcDir:     "/etc/banger",
		LibDir:     "/usr/local/lib/banger",
	}
}

// FromEnv is Default with any BANGER_*_DIR overrides applied.
func FromEnv() Layout {
	l := Default()
	for env, dst := range map[string]*string{
		EnvStateDir:   &l.StateDir,
		EnvCacheDir:   &l.CacheDir,
		EnvRuntimeDir: &l.RuntimeDir,
		EnvHelperDir:  &l.HelperDir,
		EnvEtcDir:     &l.EtcDir,
		EnvLibDir:     &l.LibDir,
	} {
		if v := os.Getenv(env); v != "" {
			*dst = filepath.Clean(v)
		}
	}
	return l
}

// Env returns the environment assignments that make another process see
// this layout (used when the CLI starts the daemons directly).
func (l Layout) Env() []string {
	return []string{
		EnvStateDir + "=" + l.StateDir,
		EnvCacheDir + "=" + l.CacheDir,
		EnvRuntimeDir + "=" + l.RuntimeDir,
		EnvHelperDir + "=" + l.HelperDir,
		EnvEtcDir + "=" + l.EtcDir,
		EnvLibDir + "=" + l.LibDir,
	}
}

func (l Layout) DaemonSocket() string     { return filepath.Join(l.RuntimeDir, "bangerd.sock") }
func (l Layout) HelperSocket() string     { return filepath.Join(l.HelperDir, "bangerd-root.sock") }
func (l Layout) InstallFile() string      { return filepath.Join(l.EtcDir, "install.toml") }
func (l Layout) SystemConfig() string     { return filepath.Join(l.EtcDir, "config.toml") }
func (l Layout) RecordsDir() string       { return filepath.Join(l.StateDir, "state") }
func (l Layout) VMDir(name string) string { return filepath.Join(l.StateDir, "vms", name) }
func (l Layout) ImagesDir() string        { return filepath.Join(l.StateDir, "images") }
func (l Layout) KernelsDir() string       { return filepath.Join(l.StateDir, "kernels") }
func (l Layout) SSHDir() string           { return filepath.Join(l.StateDir, "ssh") }
func (l Layout) AgentBinary() string      { return filepath.Join(l.LibDir, "banger-agent") }

// Installed binaries and systemd units of a system install.
const (
	BinDir       = "/usr/local/bin"
	UnitDir      = "/etc/systemd/system"
	DaemonUnit   = "bangerd.service"
	HelperUnit   = "bangerd-root.service"
	DaemonBinary = "bangerd"
	HelperBinary = "bangerd-root"
	CLIBinary    = "banger"
	AgentBinary  = "banger-agent"
)

// User is the per-user side: config and the user's ssh material.
type User struct {
	Home string
}

func xdg(env, home, fallback string) string {
	if v := os.Getenv(env); v != "" && filepath.IsAbs(v) {
		return v
	}
	return filepath.Join(home, fallback)
}

// ConfigDir is ~/.config/banger (honouring XDG_CONFIG_HOME).
func (u User) ConfigDir() string {
	return filepath.Join(xdg("XDG_CONFIG_HOME", u.Home, ".config"), "banger")
}

// ConfigFile is the user's config.toml.
func (u User) ConfigFile() string { return filepath.Join(u.ConfigDir(), "config.toml") }

// SSHConfig is the ssh_config banger maintains for `Include`.
func (u User) SSHConfig() string { return filepath.Join(u.ConfigDir(), "ssh_config") }
