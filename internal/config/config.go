// Package config loads banger's config.toml files: the system file layered
// under the user's, every key optional, each value validated, and the
// [vm_defaults] sizes resolved with their provenance. Keys lists every key
// for the reference docs.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/banger/banger/internal/paths"
)

// EnvLogLevel overrides log_level, validated the same way.
const EnvLogLevel = "BANGER_LOG_LEVEL"

// Values of the hypervisor key.
const (
	HypervisorAuto        = "auto"
	HypervisorFirecracker = "firecracker"
	HypervisorQEMU        = "qemu"
)

// Config is the resolved configuration. Keys() documents each field's key.
type Config struct {
	LogLevel       string
	DefaultImage   string
	DefaultKernel  string
	SSHKeyPath     string // absolute, or "" for banger's own key
	Hypervisor     string
	FirecrackerBin string // absolute, or "" for a PATH lookup
	JailerBin      string // absolute, or "" for a PATH lookup
	QEMUBin        string // absolute, or "" for a PATH lookup
	JailerEnabled  bool
	BootTimeout    time.Duration
	Network        Network
	VMDefaults     VMDefaults
	FileSync       []FileSync
	// Files are the config files that existed and were read, lowest
	// precedence first.
	Files []string
	// Origins maps each key that was set (by its Keys name, "network.cidr")
	// to the file that set it, or "$BANGER_LOG_LEVEL". Keys left at their
	// default are absent.
	Origins map[string]string
}

// Network is the [network] table.
type Network struct {
	Bridge string
	// CIDR is the bridge's own address with the prefix length, not masked.
	CIDR        netip.Prefix
	DNSAddr     netip.AddrPort
	UpstreamDNS []netip.AddrPort
}

// Subnet is the network CIDR belongs to, e.g. 172.16.0.0/24.
func (n Network) Subnet() netip.Prefix { return n.CIDR.Masked() }

// FileSync is one [[file_sync]] entry: a host file or directory copied into
// the guest at VM creation.
type FileSync struct {
	// Host is the path as written. The daemon still has to check, with
	// symlinks resolved, that it stays inside the owner's home.
	Host string
	// HostPath is Host cleaned, with ~/ expanded against the home.
	HostPath string
	// Guest is the path as written: ~/... or /root/...
	Guest string
	// GuestPath is Guest cleaned, with ~/ expanded to /root.
	GuestPath string
	Mode      fs.FileMode // meaningful only when ModeSet
	ModeSet   bool
}

// Default is the configuration with no file at all, for a user whose home is
// home on a host described by host.
func Default(host HostFacts, home string) *Config {
	return &Config{
		LogLevel:      "info",
		DefaultImage:  "debian-bookworm",
		DefaultKernel: "debian-cloud",
		Hypervisor:    HypervisorAuto,
		BootTimeout:   180 * time.Second,
		Network: Network{
			Bridge:  "banger0",
			CIDR:    netip.MustParsePrefix("172.16.0.1/24"),
			DNSAddr: netip.MustParseAddrPort("127.0.0.1:42069"),
		},
		VMDefaults: hostDefaults(host),
		Origins:    map[string]string{},
	}
}

// Files returns the config files banger reads, lowest precedence first: the
// system file, then the user's.
func Files(l paths.Layout, u paths.User) []string {
	return []string{l.SystemConfig(), u.ConfigFile()}
}

// LoadOptions says what Load reads.
type LoadOptions struct {
	// Files are the config files, lowest precedence first (see Files). A
	// missing file is skipped; one that cannot be read is an error.
	Files []string
	// Home is the absolute home directory ~/ expands against.
	Home string
	// Host feeds the [vm_defaults] heuristic (see DetectHost).
	Host HostFacts
	// Env looks up environment variables; nil means os.Getenv.
	Env func(string) string
}

// Load reads opts.Files over the defaults, a later file winning per key (a
// list such as file_sync is one key: the later file replaces it whole), then
// applies BANGER_LOG_LEVEL. It returns every problem found, joined, in file
// and line order; each is an *Error (errors.As finds the first) except a file
// that cannot be read.
func Load(opts LoadOptions) (*Config, error) {
	if !filepath.IsAbs(opts.Home) {
		return nil, fmt.Errorf("load config: home %q is not an absolute path", opts.Home)
	}
	env := opts.Env
	if env == nil {
		env = os.Getenv
	}
	c := Default(opts.Host, opts.Home)
	known := map[string]field{}
	for _, f := range fields() {
		known[f.Name] = f
	}
	var errs []error
	for _, file := range opts.Files {
		data, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("load config %s: %w", file, err))
			continue
		}
		c.Files = append(c.Files, file)
		for _, e := range decodeFile(c, file, data, opts.Home, known) {
			errs = append(errs, e)
		}
	}
	if v := env(EnvLogLevel); v != "" {
		if err := validLogLevel(v); err != nil {
			errs = append(errs, &Error{Key: EnvLogLevel, Msg: err.Error()})
		}
		c.LogLevel = v
		c.Origins["log_level"] = "$" + EnvLogLevel
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}
