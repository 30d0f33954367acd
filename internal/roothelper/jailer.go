package roothelper

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/banger/banger/internal/api"
)

// Routes of the jailer operations.
const (
	RouteJailerLaunch  = "/v1/jailer/launch"
	RouteJailerCleanup = "/v1/jailer/cleanup"
)

// JailerLaunchRequest asks the helper to stage a chroot for one VM and
// start Firecracker's jailer in it, which runs Firecracker there as the
// owner. Every path Firecracker is given is the host path of the same
// file: Files are hard-linked into the jail at their host paths, Dirs are
// made there owned by the owner.
type JailerLaunchRequest struct {
	// ID is the VM's id; the jail is <state dir>/jailer/firecracker/<id>/root.
	ID string `json:"id"`
	// Jailer and Firecracker are the binaries: root-owned, in root-owned
	// directories nobody else can write, as anything the helper runs as
	// root must be. Firecracker's file name must be "firecracker" (the
	// jailer names the jail after it).
	Jailer      string `json:"jailer"`
	Firecracker string `json:"firecracker"`
	// Files (kernel, initrd, disks) are the owner's regular files under
	// the state dir.
	Files []string `json:"files"`
	// Dirs (the VM's run dir) lie under the runtime dir.
	Dirs []string `json:"dirs"`
	// APISocket is Firecracker's --api-sock; it lies in one of Dirs.
	APISocket string `json:"api_socket"`
	// ConsoleLog, the owner's file under the state dir, receives
	// Firecracker's stdout (the serial console) and stderr.
	ConsoleLog string `json:"console_log"`
}

// JailerLaunch is the started jailer: its pid (Firecracker's, once the
// jailer has exec'd it), that process's start time, read before the helper
// could reap it, and the jail's root.
type JailerLaunch struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
	Root      string `json:"root"`
}

// JailerCleanupRequest asks the helper to remove a VM's jail.
type JailerCleanupRequest struct {
	ID string `json:"id"`
}

func (r JailerLaunchRequest) logAttrs() []any {
	return []any{"id", r.ID, "jailer", r.Jailer, "firecracker", r.Firecracker, "files", len(r.Files)}
}
func (r JailerCleanupRequest) logAttrs() []any { return []any{"id", r.ID} }

var jailIDRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// JailBase is where jails are built: beside the state dir, so that kernels
// and disks can be hard-linked in (a hard link cannot cross filesystems),
// but not inside it: the owner can rename anything in the state dir, and
// the jailer, run as root, follows the paths it is given.
// /var/lib/banger gives /var/lib/banger-jailer.
func (c Config) JailBase() string { return c.Layout.StateDir + "-jailer" }

// jailDir is a VM's jail directory, <base>/firecracker/<id>; the chroot is
// its root/.
func (c Config) jailDir(id string) string { return filepath.Join(c.JailBase(), "firecracker", id) }

func validateJailID(id string) error {
	if !jailIDRule.MatchString(id) {
		return api.Errorf(api.CodeBadRequest, "jail id %q is not a VM id (%s)", id, jailIDRule)
	}
	return nil
}

// LaunchJailer stages the jail and starts the jailer in its own session,
// with its output on the console log. A failure leaves no jail behind.
func (s *Server) LaunchJailer(ctx context.Context, req JailerLaunchRequest) (JailerLaunch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	jailer, fc, err := s.checkLaunch(req)
	if err != nil {
		return JailerLaunch{}, err
	}
	console, err := s.openConsole(req.ConsoleLog)
	if err != nil {
		return JailerLaunch{}, err
	}
	defer console.Close()
	if err := s.ensureJailBase(); err != nil {
		return JailerLaunch{}, err
	}
	dir := s.cfg.jailDir(req.ID)
	if err := s.removeJail(dir); err != nil {
		return JailerLaunch{}, fmt.Errorf("remove stale jail: %w", err)
	}
	root := filepath.Join(dir, "root")
	launch, err := s.stageAndStart(req, jailer, fc, root, console)
	if err != nil {
		return JailerLaunch{}, errors.Join(fmt.Errorf("launch jailer for %s: %w", req.ID, err), s.removeJail(dir))
	}
	s.log.Info("jailer started", "id", req.ID, "pid", launch.PID, "root", root)
	return launch, nil
}

// checkLaunch validates a request and returns the jailer to exec (symlinks
// resolved) and the exec file to give it.
func (s *Server) checkLaunch(req JailerLaunchRequest) (jailer, fc string, err error) {
	if err := validateJailID(req.ID); err != nil {
		return "", "", err
	}
	if jailer, err = trustedBinary(req.Jailer); err != nil {
		return "", "", err
	}
	if !strings.Contains(filepath.Base(req.Jailer), "jailer") {
		return "", "", api.Errorf(api.CodeBadRequest, "jailer %s: the file name must contain \"jailer\"", req.Jailer)
	}
	if _, err := trustedBinary(req.Firecracker); err != nil {
		return "", "", err
	}
	if filepath.Base(req.Firecracker) != "firecracker" {
		return "", "", api.Errorf(api.CodeBadRequest, "firecracker %s: the file name must be \"firecracker\" (the jailer names the jail after it); link it under that name", req.Firecracker)
	}
	if len(req.Files) == 0 {
		return "", "", api.Errorf(api.CodeBadRequest, "no files to put in the jail (a kernel at least)")
	}
	for _, f := range req.Files {
		if err := s.ownerFile(f); err != nil {
			return "", "", err
		}
	}
	for _, d := range req.Dirs {
		if err := ValidateManagedPath(d, s.cfg.Layout.RuntimeDir); err != nil {
			return "", "", err
		}
	}
	if err := ValidateManagedPath(req.APISocket, s.cfg.Layout.RuntimeDir); err != nil {
		return "", "", err
	}
	inDirs := false
	for _, d := range req.Dirs {
		inDirs = inDirs || filepath.Dir(req.APISocket) == d
	}
	if !inDirs || len(req.APISocket) > 107 {
		return "", "", api.Errorf(api.CodeBadRequest, "api socket %s must lie in one of the dirs and fit a unix socket path (107 bytes)", req.APISocket)
	}
	return jailer, req.Firecracker, nil
}

// ownerFile checks that path is a regular file of the owner's under the
// state dir, not reached through a symlink.
func (s *Server) ownerFile(path string) error {
	if err := ValidateManagedPath(path, s.cfg.Layout.StateDir); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return api.Errorf(api.CodeBadRequest, "%s: %v", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != s.cfg.OwnerUID {
		return api.Errorf(api.CodeBadRequest, "%s: not a regular file of the owner (uid %d)", path, s.cfg.OwnerUID)
	}
	return nil
}

// openConsole opens the console log for appending, refusing anything but
// the owner's regular file.
func (s *Server) openConsole(path string) (*os.File, error) {
	if err := ValidateManagedPath(path, s.cfg.Layout.StateDir); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, api.Errorf(api.CodeBadRequest, "console log: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != s.cfg.OwnerUID {
		f.Close()
		return nil, api.Errorf(api.CodeBadRequest, "console log %s: not a regular file of the owner (uid %d)", path, s.cfg.OwnerUID)
	}
	return f, nil
}

// stageAndStart builds the jail under root and starts the jailer.
func (s *Server) stageAndStart(req JailerLaunchRequest, jailer, fc, root string, console *os.File) (JailerLaunch, error) {
	if err := rootDirs(s.cfg.JailBase(), root); err != nil {
		return JailerLaunch{}, err
	}
	for _, f := range req.Files {
		if err := s.linkIn(root, f); err != nil {
			return JailerLaunch{}, err
		}
	}
	for _, d := range req.Dirs {
		in := filepath.Join(root, d)
		if err := rootDirs(root, filepath.Dir(in)); err != nil {
			return JailerLaunch{}, err
		}
		if err := os.Mkdir(in, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return JailerLaunch{}, err
		}
		if err := os.Lchown(in, s.cfg.OwnerUID, s.cfg.OwnerGID); err != nil {
			return JailerLaunch{}, err
		}
	}
	cmd := &exec.Cmd{
		Path:   jailer,
		Args:   append([]string{jailer}, s.jailerArgs(req, fc)...),
		Env:    []string{}, // the jailer clears it anyway
		Stdout: console,
		Stderr: console,
		// Its own session: a helper restart or a signal to the helper's
		// process group never reaches the VM.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	if err := cmd.Start(); err != nil {
		return JailerLaunch{}, err
	}
	pid := cmd.Process.Pid
	// Before anything reaps it, so the pid cannot have been reused.
	start, err := procStartTime(pid)
	go cmd.Wait()
	if err != nil {
		cmd.Process.Kill()
		return JailerLaunch{}, err
	}
	return JailerLaunch{PID: pid, StartTime: start, Root: root}, nil
}

// jailerArgs are the jailer's arguments, then Firecracker's after "--".
// No --daemonize (it would fork, and send the console to /dev/null) and
// no --new-pid-ns (it would fork too): the pid returned is Firecracker's.
func (s *Server) jailerArgs(req JailerLaunchRequest, fc string) []string {
	a := []string{
		"--id", req.ID,
		"--exec-file", fc,
		"--uid", strconv.Itoa(s.cfg.OwnerUID),
		"--gid", strconv.Itoa(s.cfg.OwnerGID),
		"--chroot-base-dir", s.cfg.JailBase(),
	}
	if s.cfg.NetNS != "" {
		a = append(a, "--netns", s.cfg.NetNS)
	}
	return append(a, "--", "--api-sock", req.APISocket)
}

// rootDirs makes dir and its missing parents below base, root-owned 0711:
// the owner can pass through them and nobody else can write there.
func rootDirs(base, dir string) error {
	rel, err := filepath.Rel(base, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%s is not below %s", dir, base)
	}
	cur := base
	for _, c := range strings.Split(rel, "/") {
		if c == "." {
			continue
		}
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Mkdir(cur, 0o711); err != nil {
				return err
			}
			if err := os.Chmod(cur, 0o711); err != nil { // past the umask
				return err
			}
		case err != nil:
			return err
		case !fi.IsDir():
			return fmt.Errorf("%s exists and is not a directory", cur)
		}
	}
	return nil
}

// linkIn hard-links file into the jail at its own path. The file is opened
// (O_PATH, not following a final symlink) and checked to be the owner's
// regular file, and that very inode is linked, so a path swapped under the
// check cannot put anything else in the jail. A link is the same inode:
// it gives nobody access they did not have.
func (s *Server) linkIn(root, file string) error {
	target := filepath.Join(root, file)
	if err := rootDirs(root, filepath.Dir(target)); err != nil {
		return err
	}
	fd, err := unix.Open(file, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", file, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != s.cfg.OwnerUID {
		return api.Errorf(api.CodeBadRequest, "%s: not a regular file of the owner (uid %d)", file, s.cfg.OwnerUID)
	}
	if err := unix.Linkat(fd, "", unix.AT_FDCWD, target, unix.AT_EMPTY_PATH); err != nil {
		if errors.Is(err, unix.EXDEV) {
			return fmt.Errorf("hard-link %s into the jail: it is on another filesystem than %s", file, s.cfg.JailBase())
		}
		return fmt.Errorf("hard-link %s into the jail: %w", file, err)
	}
	return nil
}

// ensureJailBase makes the jail base, root-owned 0711, in a parent only
// root can write to: nobody else may create or swap anything on the paths
// the jailer follows as root.
func (s *Server) ensureJailBase() error {
	base := s.cfg.JailBase()
	var st unix.Stat_t
	parent := filepath.Dir(base)
	if err := unix.Stat(parent, &st); err != nil {
		return err
	}
	if st.Uid != 0 || st.Mode&0o022 != 0 {
		return api.Errorf(api.CodeUnavailable, "jailer: %s must be owned by root and writable by nobody else, to hold the jails (%s)", parent, base)
	}
	if err := os.Mkdir(base, 0o711); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := unix.Lstat(base, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 {
		return api.Errorf(api.CodeUnavailable, "jailer: %s is not a directory owned by root", base)
	}
	return os.Chmod(base, 0o711)
}

// trustedBinary checks that path may be run as root: an executable regular
// file owned by root and writable by nobody else, reached through
// directories owned by root that nobody else can write to (or sticky, as
// /tmp). It returns the path with symlinks resolved.
func trustedBinary(path string) (string, error) {
	bad := func(format string, args ...any) (string, error) {
		return "", api.Errorf(api.CodeBadRequest, "binary %s: "+format, append([]any{path}, args...)...)
	}
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return bad("not an absolute, clean path")
	}
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return bad("%v", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(resolved, &st); err != nil {
		return bad("%v", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Mode&0o111 == 0 {
		return bad("not an executable file")
	}
	if st.Uid != 0 || st.Mode&0o022 != 0 {
		return bad("must be owned by root and writable by nobody else (it is run as root)")
	}
	for _, p := range []string{path, resolved} {
		for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
			if err := unix.Stat(dir, &st); err != nil {
				return bad("%v", err)
			}
			if st.Uid != 0 || st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
				return bad("directory %s must be owned by root and writable by nobody else", dir)
			}
			if dir == "/" {
				break
			}
		}
	}
	return resolved, nil
}

// procStartTime reads field 22 of /proc/<pid>/stat.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[22-3], 10, 64)
}

// CleanupJail removes a VM's jail. It refuses any path outside the jail
// base, and a jail with anything mounted below it.
func (s *Server) CleanupJail(ctx context.Context, id string) error {
	if err := validateJailID(id); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removeJail(s.cfg.jailDir(id))
}

func (s *Server) removeJail(dir string) error {
	base := s.cfg.JailBase()
	if _, err := os.Lstat(base); errors.Is(err, fs.ErrNotExist) {
		return nil // no jail was ever made
	}
	if err := ValidateManagedPath(dir, base); err != nil {
		return err
	}
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	mounts, err := mountsBelow(dir)
	if err != nil {
		return err
	}
	if len(mounts) > 0 {
		return api.Errorf(api.CodeConflict, "jail %s has mounts below it (%s): not removing it", dir, strings.Join(mounts, ", "))
	}
	// RemoveAll opens every directory without following symlinks, so what
	// the jailed owner left in the jail cannot send it elsewhere.
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove jail %s: %w", dir, err)
	}
	return nil
}

// mountsBelow lists this namespace's mount points inside dir.
func mountsBelow(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
