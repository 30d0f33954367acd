package golden

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Keyring is the Debian archive keyring debootstrap checks Release files
// against. The build refuses to run without it rather than let debootstrap
// fall back to unverified downloads.
const Keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// tools are the host programs a build runs.
type tools struct {
	debootstrap string
	mkfs        string
	dumpe2fs    string
	debugfs     string
	npm         string
}

// toolPackages lists the programs and the Debian packages providing them, for
// the error message.
func toolPackages() []struct{ name, pkg string } {
	return []struct{ name, pkg string }{
		{"debootstrap", "debootstrap"},
		{"gpgv", "gpgv"}, // debootstrap's signature check
		{"wget", "wget"}, // debootstrap's downloader
		{"mkfs.ext4", "e2fsprogs"},
		{"dumpe2fs", "e2fsprogs"},
		{"debugfs", "e2fsprogs"},
		{"npm", "npm"},
	}
}

// Preflight reports every host prerequisite of Build that is missing, with
// the Debian packages that provide them.
func Preflight() error {
	_, err := findTools()
	return err
}

func findTools() (tools, error) {
	found := map[string]string{}
	var missing, pkgs []string
	for _, t := range toolPackages() {
		p, err := lookTool(t.name)
		if err != nil {
			missing = append(missing, t.name)
			pkgs = appendUnique(pkgs, t.pkg)
			continue
		}
		found[t.name] = p
	}
	if _, err := os.Stat(Keyring); err != nil {
		missing = append(missing, Keyring)
		pkgs = appendUnique(pkgs, "debian-archive-keyring")
	}
	if len(missing) > 0 {
		return tools{}, fmt.Errorf("image builder prerequisites missing: %s (on Debian: apt-get install %s)",
			strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	return tools{
		debootstrap: found["debootstrap"],
		mkfs:        found["mkfs.ext4"],
		dumpe2fs:    found["dumpe2fs"],
		debugfs:     found["debugfs"],
		npm:         found["npm"],
	}, nil
}

// lookTool searches PATH and then the sbin directories, which a service's
// PATH may lack.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New(name + ": not found")
}

// hostEnv is the build's environment with the sbin directories on PATH
// (debootstrap calls chroot, mount and friends by name).
func hostEnv() []string {
	env := os.Environ()
	path := os.Getenv("PATH")
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if !strings.Contains(":"+path+":", ":"+d+":") {
			path += ":" + d
		}
	}
	path = strings.TrimPrefix(path, ":")
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "LC_ALL=") && !strings.HasPrefix(kv, "LANGUAGE=") {
			out = append(out, kv)
		}
	}
	return append(out, "PATH="+path, "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
}

// chrootEnv is the whole environment of commands run inside the image.
// INITRD=No makes the kernel's postinst hook skip initramfs generation:
// banger boots with its own initramfs.
func chrootEnv() []string {
	return []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"LC_ALL=C",
		"DEBIAN_FRONTEND=noninteractive",
		"DEBCONF_NONINTERACTIVE_SEEN=true",
		"INITRD=No",
	}
}

func appendUnique(list []string, s string) []string {
	for _, v := range list {
		if v == s {
			return list
		}
	}
	return append(list, s)
}
