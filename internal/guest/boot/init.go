package boot

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Main is the init of banger's initramfs; banger-agent calls it when it
// runs as PID 1. It never returns: it execs the image's init, or on any
// error prints "banger-init: <error>" on the console and powers the
// machine off, so the host sees a quick, explained failure instead of a
// hang.
func Main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "banger-init: refusing to run: not PID 1")
		os.Exit(2)
	}
	in := &initProc{out: os.Stderr, start: time.Now()}
	err := in.run(context.Background())
	fmt.Fprintf(in.out, "banger-init: %v\n", err)
	time.Sleep(time.Second)
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	// If power-off is not possible, init exiting makes the kernel panic,
	// which with panic=-1 resets the machine; either way the VMM exits.
	os.Exit(1)
}

// initProc carries the init's console and timing.
type initProc struct {
	out   io.Writer
	start time.Time
	debug bool
}

func (in *initProc) logf(format string, args ...any) {
	if in.debug {
		fmt.Fprintf(in.out, "banger-init: [%6.3fs] %s\n", time.Since(in.start).Seconds(), fmt.Sprintf(format, args...))
	}
}

// run does the whole boot; it returns only on error.
func (in *initProc) run(ctx context.Context) error {
	// Never take a real root filesystem apart: only an initramfs is
	// ramfs or tmpfs at /.
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return fmt.Errorf("statfs /: %w", err)
	}
	if st.Type != unix.RAMFS_MAGIC && st.Type != unix.TMPFS_MAGIC {
		return fmt.Errorf("/ is not an initramfs (filesystem magic %#x)", st.Type)
	}
	for _, m := range earlyMounts() {
		if err := doMount(m); err != nil && !errors.Is(err, unix.EBUSY) {
			return err
		}
	}
	if con, err := os.OpenFile("/dev/console", os.O_WRONLY|unix.O_NOCTTY, 0); err == nil {
		in.out = con
	}
	raw, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	cmdline := strings.TrimSpace(string(raw))
	p, err := ParseCmdline(cmdline)
	if err != nil {
		return err
	}
	in.debug = p.Debug
	in.logf("cmdline: %s", cmdline)

	if err := in.loadModules(cmdline); err != nil {
		return err
	}
	disks := []Disk{p.Image, p.Layer}
	if !p.Work.IsZero() {
		disks = append(disks, p.Work)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	devs, err := waitDisks(wctx, "/sys/block", "/dev", disks)
	cancel()
	if err != nil {
		return err
	}
	in.logf("disks: %v", devs)
	work := ""
	if len(devs) > 2 {
		work = devs[2]
	}
	if err := in.mountRoot(planRoot(devs[0], devs[1], work)); err != nil {
		return err
	}
	ifname, err := configureNetwork(ctx, p)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if ifname != "" {
		in.logf("network: %s %s via %s", ifname, p.Address, p.Gateway)
	}
	if err := writeIdentity(p); err != nil {
		return err
	}
	initPath, systemd, err := chooseInit(newRoot, p.Init)
	if err != nil {
		return err
	}
	if err := installAgent(systemd); err != nil {
		return err
	}
	in.logf("init %s (systemd: %v)", initPath, systemd)
	return in.switchRoot(initPath, !systemd)
}

func doMount(m mount) error {
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
		return fmt.Errorf("mount %s: %w", m, err)
	}
	return nil
}

// loadModules loads the modules /etc/banger/modules lists, in order,
// passing each the parameters the command line has for it.
func (in *initProc) loadModules(cmdline string) error {
	list, err := os.ReadFile(ModulesList)
	if err != nil {
		return fmt.Errorf("read module list: %w", err)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return err
	}
	release := unix.ByteSliceToString(uts.Release[:])
	sc := bufio.NewScanner(bytes.NewReader(list))
	for sc.Scan() {
		name := strings.TrimSpace(sc.Text())
		if name == "" {
			continue
		}
		params := ModuleParams(cmdline, name)
		if err := loadModule(filepath.Join(ModulesDir, release, name+".ko"), params); err != nil {
			return fmt.Errorf("load module %s: %w", name, err)
		}
		in.logf("loaded %s %s", name, params)
	}
	return nil
}

func loadModule(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w (was the initramfs built for this kernel?)", err)
		}
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), params, 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// mountRoot assembles the new root.
func (in *initProc) mountRoot(plan rootPlan) error {
	for _, m := range plan.mounts {
		if rel, ok := strings.CutPrefix(m.target, newRoot+"/"); ok {
			// Resolve inside the new root: an image's absolute symlink
			// must not send a mount into the initramfs.
			t, err := confined(newRoot, "/"+rel)
			if err != nil {
				return err
			}
			m.target = t
		}
		if err := doMount(m); err != nil {
			return err
		}
		in.logf("mounted %s", m)
		if m.target == layerDir {
			for _, d := range plan.layerDirs {
				if err := os.MkdirAll(d, 0o755); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// writeIdentity sets the host name and writes the new root's hostname,
// hosts and resolv.conf files.
func writeIdentity(p Params) error {
	if p.Hostname != "" {
		if err := unix.Sethostname([]byte(p.Hostname)); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
		if err := writeRootFile("/etc/hostname", []byte(p.Hostname+"\n")); err != nil {
			return err
		}
		old, err := readRootFile("/etc/hosts")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := writeRootFile("/etc/hosts", hostsFile(old, p.Hostname)); err != nil {
			return err
		}
	}
	if len(p.DNS) > 0 {
		if err := writeRootFile("/etc/resolv.conf", resolvConf(p.DNS)); err != nil {
			return err
		}
	}
	return nil
}

func readRootFile(name string) ([]byte, error) {
	p, err := confined(newRoot, name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// writeRootFile replaces name in the new root with a regular file holding
// data; a symlink there (resolv.conf pointing at a resolver's stub) is
// replaced, not followed.
func writeRootFile(name string, data []byte) error {
	dir, err := confined(newRoot, filepath.Dir(name))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p := filepath.Join(dir, filepath.Base(name))
	tmp := p + ".banger-tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// installAgent puts the agent, and with systemd its unit, into /run, which
// moves into the new root.
func installAgent(systemd bool) error {
	bin, err := os.ReadFile(InitPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", InitPath, err)
	}
	for _, f := range agentFiles(bin, systemd) {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return err
		}
		if f.link != "" {
			err = os.Symlink(f.link, f.path)
		} else {
			err = os.WriteFile(f.path, f.data, f.mode)
		}
		if err != nil {
			return fmt.Errorf("install agent: %w", err)
		}
	}
	return nil
}

// switchRoot moves the API filesystems into the new root, frees the
// initramfs, makes the new root / and execs init there. Without systemd
// to run the agent's unit, the agent is started first, as init's child.
func (in *initProc) switchRoot(initPath string, startAgent bool) error {
	for _, m := range movedMounts() {
		t, err := confined(newRoot, m)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(t, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m, t, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s to %s: %w", m, t, err)
		}
	}
	if err := freeInitramfs(); err != nil {
		// Costs memory, not correctness.
		fmt.Fprintf(in.out, "banger-init: free initramfs: %v\n", err)
	}
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move new root to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if startAgent {
		pid, err := in.startAgent()
		if err != nil {
			return fmt.Errorf("start agent: %w", err)
		}
		in.logf("agent started, pid %d", pid)
	}
	fmt.Fprintln(in.out, "banger-init: switching root")
	argv := append([]string{initPath}, os.Args[1:]...)
	return fmt.Errorf("exec %s: %w", initPath, unix.Exec(initPath, argv, os.Environ()))
}

// startAgent runs the agent as a child of init, in its own session, with
// its output on the console.
func (in *initProc) startAgent() (int, error) {
	null, err := os.Open("/dev/null")
	if err != nil {
		return 0, err
	}
	defer null.Close()
	out := uintptr(2)
	if f, ok := in.out.(*os.File); ok {
		out = f.Fd()
	}
	return syscall.ForkExec(agentPath, []string{agentPath}, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{null.Fd(), out, out},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
}

// freeInitramfs deletes the initramfs's files (kept in memory otherwise),
// staying on its filesystem: mounts such as the new root, /image and
// /layer are left alone.
func freeInitramfs() error {
	var root unix.Stat_t
	if err := unix.Lstat("/", &root); err != nil {
		return err
	}
	var errs []error
	var walk func(dir string)
	walk = func(dir string) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil || st.Dev != root.Dev {
				continue
			}
			if e.IsDir() {
				walk(p)
				// Directories holding mount points stay.
				if err := unix.Rmdir(p); err != nil && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY) {
					errs = append(errs, err)
				}
				continue
			}
			if err := unix.Unlink(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	walk("/")
	return errors.Join(errs...)
}
