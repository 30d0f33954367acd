package boot

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Where the init puts things in the initramfs.
const (
	imageDir    = "/image"
	layerDir    = "/layer"
	newRoot     = "/newroot"
	agentDir    = "/run/banger"
	agentPath   = agentDir + "/banger-agent"
	unitDir     = "/run/systemd/system"
	agentUnit   = "banger-agent.service"
	wantsDir    = unitDir + "/sysinit.target.wants"
	defaultInit = "/sbin/init"
)

// mount is one mount(2) call, preceded by creating its target.
type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func (m mount) String() string {
	return fmt.Sprintf("%s on %s type %s flags %#x (%s)", m.source, m.target, m.fstype, m.flags, m.data)
}

// earlyMounts are the API filesystems the init itself needs. /run is the
// tmpfs that later becomes the new root's /run, with the agent in it.
func earlyMounts() []mount {
	return []mount{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
		// Not noexec: the agent runs from here. Same options as systemd's.
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755,size=20%"},
	}
}

// rootPlan is how the new root is assembled from the disks' device paths.
type rootPlan struct {
	// mounts in order; targets under newRoot are relative to it and must
	// be resolved inside it before mounting (see confined).
	mounts []mount
	// layerDirs are created on the layer once it is mounted.
	layerDirs []string
}

// planRoot: the image read-only, the layer writable, an overlay of the two
// as the new root, Docker's data on the layer's ext4 (overlayfs cannot be
// the upper layer of Docker's own overlay2), and the work disk on /root.
func planRoot(image, layer, work string) rootPlan {
	p := rootPlan{
		mounts: []mount{
			// noload: the image is shared read-only, never replay its journal.
			{image, imageDir, "ext4", unix.MS_RDONLY, "noload"},
			{layer, layerDir, "ext4", 0, ""},
			{"overlay", newRoot, "overlay", 0, fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", imageDir, layerDir, layerDir)},
			{layerDir + "/docker", newRoot + "/var/lib/docker", "", unix.MS_BIND, ""},
		},
		layerDirs: []string{layerDir + "/upper", layerDir + "/work", layerDir + "/docker"},
	}
	if work != "" {
		p.mounts = append(p.mounts, mount{work, newRoot + "/root", "ext4", 0, ""})
	}
	return p
}

// movedMounts are moved from the initramfs into the new root before the
// switch, so the image's init finds them already mounted.
func movedMounts() []string { return []string{"/dev", "/proc", "/sys", "/run"} }

// unitText is the systemd unit that runs the agent in the new root. It
// lives in /run/systemd/system, so the image is not modified; no default
// dependencies, so it starts early in sysinit and stays up until the end.
func unitText(execPath string) string {
	return `# Written by banger's initramfs at boot; lives only in /run.
[Unit]
Description=banger guest agent
DefaultDependencies=no
StartLimitIntervalSec=0

[Service]
Type=simple
ExecStart=` + execPath + `
Restart=always
RestartSec=1

[Install]
WantedBy=sysinit.target
`
}

// agentFile is a file the init writes into /run for the new root.
type agentFile struct {
	path string
	mode os.FileMode
	data []byte
	link string // set: a symlink to link instead
}

// agentFiles are what makes the agent run in the new root: the binary,
// and with systemd its unit, enabled by a symlink.
func agentFiles(binary []byte, systemd bool) []agentFile {
	files := []agentFile{{path: agentPath, mode: 0o755, data: binary}}
	if systemd {
		files = append(files,
			agentFile{path: unitDir + "/" + agentUnit, mode: 0o644, data: []byte(unitText(agentPath))},
			agentFile{path: wantsDir + "/" + agentUnit, link: "../" + agentUnit},
		)
	}
	return files
}

// hostsFile returns /etc/hosts with hostname on 127.0.1.1 (Debian's
// convention), replacing any 127.0.1.1 line, and localhost entries when
// the file had none.
func hostsFile(old []byte, hostname string) []byte {
	var b bytes.Buffer
	hasLocalhost := false
	for _, line := range strings.SplitAfter(string(old), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "127.0.1.1" {
			continue
		}
		if len(f) > 1 && f[0] == "127.0.0.1" {
			hasLocalhost = true
		}
		b.WriteString(line)
	}
	if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	if !hasLocalhost {
		b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	}
	fmt.Fprintf(&b, "127.0.1.1\t%s\n", hostname)
	return b.Bytes()
}

// resolvConf is /etc/resolv.conf for the given name servers.
func resolvConf(dns []netip.Addr) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by banger at boot.\n")
	for _, a := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	return b.Bytes()
}

// errLoop is returned for symlink chains that do not end.
var errLoop = errors.New("too many levels of symbolic links")

// resolveIn resolves p (absolute) inside root the way the new root's
// processes will see it: symlinks, absolute ones included, are followed
// relative to root and ".." stops at root. The last component need not
// exist; the result is absolute, relative to root.
func resolveIn(root, p string) (string, error) {
	parts := strings.Split(p, "/")
	resolved := "/"
	hops := 0
	for len(parts) > 0 {
		c := parts[0]
		parts = parts[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = path.Dir(resolved)
			continue
		}
		next := path.Join(resolved, c)
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// Nothing to follow below a missing name.
				return path.Join(append([]string{next}, parts...)...), nil
			}
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("resolve %s: %w", p, errLoop)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			resolved = "/"
		}
		parts = append(strings.Split(target, "/"), parts...)
	}
	return resolved, nil
}

// confined is p inside root with symlinks resolved inside root, for
// mount(2) and file writes that the kernel would otherwise resolve against
// the initramfs.
func confined(root, p string) (string, error) {
	r, err := resolveIn(root, p)
	if err != nil {
		return "", err
	}
	return filepath.Join(root, r), nil
}

// chooseInit picks the program to exec in root: want if given, else the
// first of /sbin/init, /lib/systemd/systemd, /bin/sh that is an
// executable file. systemd reports whether it is systemd, which decides
// how the agent is started.
func chooseInit(root, want string) (p string, systemd bool, err error) {
	candidates := []string{defaultInit, "/lib/systemd/systemd", "/bin/sh"}
	if want != "" {
		candidates = []string{want}
	}
	for _, c := range candidates {
		r, err := resolveIn(root, c)
		if err != nil {
			continue
		}
		fi, err := os.Stat(filepath.Join(root, r))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			continue
		}
		return c, path.Base(r) == "systemd", nil
	}
	return "", false, fmt.Errorf("no init in the image: none of %s is an executable file", strings.Join(candidates, ", "))
}
