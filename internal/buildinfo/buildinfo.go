// Package buildinfo carries the version stamped into every banger binary at
// link time (see the Makefile's LDFLAGS).
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// Set with -ldflags "-X github.com/banger/banger/internal/buildinfo.Version=...".
var (
	Version = "dev"
	Commit  = ""
	Date    = ""
)

// APIVersion is bumped whenever the CLI<->daemon wire contract changes in a
// way an older peer cannot understand. Different binary versions with the
// same APIVersion interoperate (with a warning); different APIVersions refuse.
const APIVersion = 1

// Info is the version record every binary reports.
type Info struct {
	Version    string `json:"version"`
	Commit     string `json:"commit,omitempty"`
	Date       string `json:"date,omitempty"`
	APIVersion int    `json:"api_version"`
}

// Get returns this binary's build information, filling the commit from the
// Go toolchain's VCS stamp when the linker flags did not set it.
func Get() Info {
	i := Info{Version: Version, Commit: Commit, Date: Date, APIVersion: APIVersion}
	if i.Commit == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					i.Commit = s.Value
				case "vcs.time":
					if i.Date == "" {
						i.Date = s.Value
					}
				}
			}
		}
	}
	if len(i.Commit) > 12 {
		i.Commit = i.Commit[:12]
	}
	return i
}

// String renders "v (commit, date)".
func (i Info) String() string {
	s := i.Version
	switch {
	case i.Commit != "" && i.Date != "":
		s += fmt.Sprintf(" (%s, %s)", i.Commit, i.Date)
	case i.Commit != "":
		s += fmt.Sprintf(" (%s)", i.Commit)
	}
	return s
}
