// Package golden builds banger's default golden image from Debian packages:
// debootstrap (Release signatures checked against debian-archive-keyring),
// banger's guest configuration, a pinned mise binary, then ext4 images of the
// root filesystem and of the initial /root, plus the Debian cloud kernel
// copied out beside them. It runs as root inside the privileged helper.
package golden

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
)

// builderVersion names the recipe in this package. Bump it whenever a change
// here alters the output in a way the rendered files below do not capture
// (removed paths, masked units, mkfs options), so cached images are rebuilt.
const builderVersion = "golden/1"

// Spec is everything a build is asked to produce.
type Spec struct {
	Name  string // image name, e.g. "debian-bookworm"
	Suite string // Debian suite given to debootstrap, e.g. "bookworm"
	// Packages are installed on top of debootstrap's minbase variant. The
	// recipe needs systemd-sysv, openssh-server, docker.io and exactly one
	// linux-image among them.
	Packages []string
	Mise     MisePin
}

// MisePin fixes the mise binary installed at /usr/local/bin/mise.
type MisePin struct {
	Package string // npm package carrying the Linux x86-64 binary
	Version string
	SHA256  string // of the npm tarball, hex
}

// DefaultSpec is banger's default image, debian-bookworm.
func DefaultSpec() Spec {
	return Spec{
		Name:  "debian-bookworm",
		Suite: "bookworm",
		Packages: []string{
			"systemd", "systemd-sysv", "udev", "dbus",
			"openssh-server", "docker.io",
			"git", "jq", "curl", "tmux", "ca-certificates",
			"iproute2", "iputils-ping", "procps", "less",
			kernelPackage,
		},
		Mise: MisePin{
			Package: "@jdxcode/mise-linux-x64",
			Version: "2026.9.15",
			SHA256:  "b51f2463bc4fcdc3b0959b1454792f64be3612e73d856cbca4a062e39e070e74",
		},
	}
}

// kernelPackage is Debian's cloud kernel: virtio and ext4 without the
// hardware drivers of the generic flavour. Its modules come with it.
const kernelPackage = "linux-image-cloud-amd64"

// Digest is the cache key of the image Spec describes: a hex sha256 over the
// spec, the builder version and the text of every file the builder writes.
// Package order does not matter.
func (s Spec) Digest() string {
	pkgs := slices.Clone(s.Packages)
	slices.Sort(pkgs)
	in := struct {
		Builder  string
		Name     string
		Suite    string
		Packages []string
		Mise     MisePin
		Files    []file
		Masked   []string
		Enabled  []string
		Removed  []string
		Kept     map[string][]string
		Bashrc   string
	}{builderVersion, s.Name, s.Suite, pkgs, s.Mise, rootFiles(), maskedUnits(), enabledUnits(),
		removedPaths(), keptInPrunedDirs(), bashrcMise}
	b, err := json.Marshal(in)
	if err != nil {
		// Only strings and slices of them: Marshal cannot fail.
		panic(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	suiteRE  = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	debPkgRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	npmPkgRE = regexp.MustCompile(`^(@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*$`)
	semverRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// validate rejects anything that could reach a command line as an option or
// a list separator, before any of it is used.
func (s Spec) validate() error {
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf("image name %q: want a DNS label", s.Name)
	}
	if !suiteRE.MatchString(s.Suite) {
		return fmt.Errorf("image %q: suite %q is not a Debian suite name", s.Name, s.Suite)
	}
	if len(s.Packages) == 0 {
		return fmt.Errorf("image %q: no packages", s.Name)
	}
	for _, p := range s.Packages {
		if !debPkgRE.MatchString(p) {
			return fmt.Errorf("image %q: %q is not a Debian package name", s.Name, p)
		}
	}
	if !npmPkgRE.MatchString(s.Mise.Package) {
		return fmt.Errorf("image %q: mise package %q is not an npm package name", s.Name, s.Mise.Package)
	}
	if !semverRE.MatchString(s.Mise.Version) {
		return fmt.Errorf("image %q: mise version %q: want N.N.N", s.Name, s.Mise.Version)
	}
	if !sha256RE.MatchString(s.Mise.SHA256) {
		return fmt.Errorf("image %q: mise sha256 %q: want 64 lower-case hex digits", s.Name, s.Mise.SHA256)
	}
	return nil
}
