// Package install puts banger on a host: binaries, install metadata, the two
// systemd units, and the direct (non-systemd) way to run both daemons.
package install

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/atomicfile"
	"github.com/pelletier/go-toml/v2"
)

// Metadata is /etc/banger/install.toml: who owns this installation. The root
// helper authorises callers by OwnerUID from it.
type Metadata struct {
	OwnerUser   string    `toml:"owner_user"`
	OwnerUID    int       `toml:"owner_uid"`
	OwnerGID    int       `toml:"owner_gid"`
	OwnerHome   string    `toml:"owner_home"`
	Version     string    `toml:"version"`
	Commit      string    `toml:"commit,omitempty"`
	InstalledAt time.Time `toml:"installed_at"`
	// Systemd is false when the host's PID 1 is not systemd and the daemons
	// are run with `banger system run` instead of units.
	Systemd bool `toml:"systemd"`
}

// ReadMetadata loads install.toml; a missing file is api.ErrNotFound.
func ReadMetadata(path string) (Metadata, error) {
	var m Metadata
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return m, &api.Error{Code: api.CodeNotFound, Message: "banger is not installed (no " + path + ")",
			Hint: `run: sudo banger system install --owner "$USER"`}
	}
	if err != nil {
		return m, fmt.Errorf("read install metadata: %w", err)
	}
	if err := toml.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("read install metadata %s: %w", path, err)
	}
	if m.OwnerUID < 0 || m.OwnerUser == "" {
		return m, fmt.Errorf("install metadata %s: owner_user and owner_uid are required", path)
	}
	return m, nil
}

// WriteMetadata writes install.toml atomically, readable by everyone (it holds
// no secret, and the CLI reads it as the user).
func WriteMetadata(path string, m Metadata) error {
	b, err := toml.Marshal(m)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o644)
}

// Owner is the resolved identity of the installation's owner.
type Owner struct {
	User string
	UID  int
	GID  int
	Home string
}

// LookupOwner resolves a user name or numeric uid to an Owner, refusing root:
// the owner daemon must never run as root.
func LookupOwner(name string, allowRoot bool) (Owner, error) {
	var u *user.User
	var err error
	if _, nerr := strconv.Atoi(name); nerr == nil {
		u, err = user.LookupId(name)
	} else {
		u, err = user.Lookup(name)
	}
	if err != nil {
		return Owner{}, api.Errorf(api.CodeBadRequest, "owner %q: no such user", name)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid == 0 && !allowRoot {
		return Owner{}, api.WithHint(api.Errorf(api.CodeBadRequest, "the owner must not be root: bangerd runs as the owner"),
			`pass your own user (sudo banger system install --owner "$USER"), or --allow-root in a root-only container`)
	}
	return Owner{User: u.Username, UID: uid, GID: gid, Home: u.HomeDir}, nil
}
