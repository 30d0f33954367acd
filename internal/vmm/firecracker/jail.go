package firecracker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger/banger/internal/vmm"
)

// Jailer configures jailer mode: the root helper stages a chroot for the
// VM and starts Firecracker's jailer, which drops Firecracker into it as
// the owner.
//
// Every path Firecracker is given is the host path of the same file: the
// helper hard-links the kernel, initrd and disks into the chroot at their
// host paths, and makes the run dir there, owned by the owner. So the API
// requests are the same in both modes, socket paths stay as short as the
// run dir's (sun_path holds 108 bytes; the chroot's path would not fit),
// and the run dir's entries on the host are symlinks into the chroot.
type Jailer struct {
	// Binary is the jailer (absolute, root-owned: the helper refuses any
	// other).
	Binary string
	Jails  Jails
}

// Jails is what jailer mode needs of the root helper.
type Jails interface {
	LaunchJail(ctx context.Context, req JailRequest) (Jailed, error)
	CleanupJail(ctx context.Context, id string) error
}

// JailRequest asks the helper to stage a chroot and start the jailer in it.
type JailRequest struct {
	// ID is the VM's id: the jail is <chroot base>/firecracker/<id>/root.
	ID          string
	Jailer      string
	Firecracker string
	// Files are hard-linked into the jail at their host paths.
	Files []string
	// Dirs are made in the jail at their host paths, owned by the owner,
	// for what Firecracker creates (sockets, log, metrics).
	Dirs []string
	// APISocket is passed as --api-sock; it lies in one of Dirs.
	APISocket string
	// ConsoleLog receives Firecracker's stdout (the serial console) and
	// stderr, appended.
	ConsoleLog string
}

// Jailed is the jailed Firecracker: its pid and start time (read before
// the helper could reap it), and the chroot on the host.
type Jailed struct {
	PID       int
	StartTime uint64
	Root      string
}

// startJailed has the helper launch the jailer, links the run dir's names
// to the files inside the jail, and waits for the API.
func (b *Backend) startJailed(ctx context.Context, spec vmm.Spec, p plan) (*vmm.Machine, string, error) {
	j := b.cfg.Jailer
	files := []string{spec.Kernel}
	if spec.Initrd != "" {
		files = append(files, spec.Initrd)
	}
	for _, d := range spec.Disks {
		files = append(files, d.Path)
	}
	jailed, err := j.Jails.LaunchJail(ctx, JailRequest{
		ID: spec.ID, Jailer: j.Binary, Firecracker: b.cfg.Binary,
		Files: files, Dirs: []string{filepath.Clean(spec.RunDir)},
		APISocket: p.api, ConsoleLog: spec.ConsoleLog,
	})
	if err != nil {
		return nil, "", err
	}
	fail := func(err error) (*vmm.Machine, string, error) {
		killJailed(jailed)
		b.removeJail(jailed.Root)
		return nil, "", err
	}
	inJail := func(p string) string { return filepath.Join(jailed.Root, p) }
	for _, f := range []string{p.log, p.metrics} {
		if err := os.WriteFile(inJail(f), nil, 0o600); err != nil {
			return fail(err)
		}
	}
	for _, f := range []string{p.api, spec.AgentSocket, p.log, p.metrics} {
		if err := os.Symlink(inJail(f), f); err != nil {
			return fail(err)
		}
	}
	alive := func() bool { return vmm.StartTime(jailed.PID) == jailed.StartTime }
	version, err := b.awaitAPI(ctx, p.api, alive)
	if err != nil {
		return fail(err)
	}
	// Firecracker answers: the jailer has exec'd it, so the command line
	// read now is Firecracker's.
	m, err := vmm.Watch(vmm.Record{
		Backend: Name, PID: jailed.PID, StartTime: jailed.StartTime,
		ControlSocket: p.api, AgentSocket: spec.AgentSocket, AgentVsockPort: AgentPort,
		Log: p.log, Jail: jailed.Root,
	}, control{NewClient(p.api)})
	if err != nil {
		return fail(err)
	}
	go b.removeJailAfter(m, jailed.Root)
	return m, version, nil
}

// killJailed kills the jailed Firecracker (it runs as the owner, as this
// process does), making sure through a pidfd that the pid is still it.
func killJailed(j Jailed) {
	fd, err := unix.PidfdOpen(j.PID, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if vmm.StartTime(j.PID) != j.StartTime {
		return
	}
	unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	for range 100 {
		if vmm.StartTime(j.PID) != j.StartTime {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeJailAfter removes the jail once its Firecracker has exited.
func (b *Backend) removeJailAfter(m *vmm.Machine, root string) {
	m.Wait(context.Background())
	b.removeJail(root)
}

// removeJail asks the helper to remove a jail, logging a failure: the jail
// holds only links and what Firecracker made, and the next start of the VM
// replaces it.
func (b *Backend) removeJail(root string) {
	if b.cfg.Jailer == nil {
		b.cfg.Logger.Warn("jail left behind: jailer mode is off now", "jail", root)
		return
	}
	id, err := JailID(root)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = b.cfg.Jailer.Jails.CleanupJail(ctx, id)
	}
	if err != nil {
		b.cfg.Logger.Warn("remove jail", "jail", root, "err", err)
	}
}

// JailID is the VM id of a jail's root, <base>/firecracker/<id>/root.
func JailID(root string) (string, error) {
	root = filepath.Clean(root)
	id := filepath.Base(filepath.Dir(root))
	if filepath.Base(root) != "root" || filepath.Base(filepath.Dir(filepath.Dir(root))) != "firecracker" || id == "" {
		return "", fmt.Errorf("%s is not a jail root (<base>/firecracker/<id>/root)", root)
	}
	return id, nil
}
