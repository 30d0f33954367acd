package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// drainIdle is how long output is still read after the process exited
// while nothing arrives: whatever the process wrote is already in the pipe,
// so this only bounds waiting for a background child that kept it open.
const drainIdle = 250 * time.Millisecond

func (a *Agent) handleExec(w http.ResponseWriter, r *http.Request) {
	var req ExecRequest
	if err := decodeJSON(r, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := validateExec(req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if !headerHas(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), execProtocol) {
		a.writeError(w, r, badRequest("exec needs Connection: Upgrade and Upgrade: %s", execProtocol))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		a.writeError(w, r, fmt.Errorf("hijack exec connection: %w", err))
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Time{}) // the server's header timeout must not cut the stream
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + execProtocol + "\r\n\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	a.runExec(req, brw.Reader, conn)
}

func headerHas(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func validateExec(req ExecRequest) error {
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		return badRequest("exec: argv is empty")
	}
	for _, e := range req.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return badRequest("exec: env entry %q is not NAME=value", e)
		}
	}
	if req.Dir != "" && !filepath.IsAbs(req.Dir) {
		return badRequest("exec: dir %q must be absolute", req.Dir)
	}
	return nil
}

// process is a started command and the parent's ends of its stdio.
type process struct {
	cmd     *exec.Cmd
	tty     *os.File // pty master, nil without a tty
	stdin   *os.File // pipe write end or the pty master; nil for /dev/null
	outputs []output
	// reaped is set once Wait returned: the pid may then be reused, so no
	// more signals go to it.
	reaped atomic.Bool
}

type output struct {
	typ byte
	f   *os.File
}

func (a *Agent) runExec(req ExecRequest, r *bufio.Reader, conn net.Conn) {
	fw := &frameWriter{w: conn}
	p, err := a.start(req)
	if err != nil {
		code, msg := startFailure(err)
		a.log.Info("exec could not start", "argv", req.Argv, "code", code, "err", msg)
		fw.writeExit(code, msg)
		return
	}
	a.log.Info("exec started", "argv", req.Argv, "pid", p.cmd.Process.Pid, "tty", req.TTY)
	exited := make(chan struct{})
	q := newStdinQueue()

	go func() {
		err := p.serveFrames(r, q)
		q.close()
		select {
		case <-exited:
		default:
			a.log.Info("exec host went away, killing process group", "pid", p.cmd.Process.Pid, "err", err)
			p.signal(unix.SIGKILL)
		}
	}()
	fed := make(chan struct{})
	if p.stdin != nil {
		go func() {
			defer close(fed)
			p.feedStdin(q, fw, req.TTY)
		}()
	} else {
		close(fed)
	}
	var finished atomic.Bool
	var pumps sync.WaitGroup
	for _, o := range p.outputs {
		pumps.Go(func() { pumpOutput(o, fw, &finished) })
	}

	err = p.cmd.Wait()
	p.reaped.Store(true)
	close(exited)
	finished.Store(true)
	for _, o := range p.outputs {
		o.f.SetReadDeadline(time.Now().Add(drainIdle))
	}
	pumps.Wait()
	// Stop feeding stdin (closing interrupts a write a background child
	// never reads) so that no ack follows the exit frame.
	q.close()
	if p.stdin != nil {
		p.stdin.Close()
	}
	<-fed
	code := exitCode(p.cmd.ProcessState, err)
	a.log.Info("exec exited", "argv", req.Argv, "pid", p.cmd.Process.Pid, "code", code)
	fw.writeExit(code, "")
	for _, o := range p.outputs {
		o.f.Close()
	}
}

func (a *Agent) start(req ExecRequest) (*process, error) {
	env := execEnv(a.home, req)
	path, err := lookPath(req.Argv[0], envValue(env, "PATH"))
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{Path: path, Args: req.Argv, Env: env, Dir: req.Dir}
	if cmd.Dir == "" {
		cmd.Dir = a.home
	}
	// The child's chdir failing is reported like a missing binary
	// (ENOENT from fork/exec); check first to tell them apart.
	if fi, err := os.Stat(cmd.Dir); err != nil || !fi.IsDir() {
		if err == nil {
			err = syscall.ENOTDIR
		}
		return nil, &fs.PathError{Op: "chdir", Path: cmd.Dir, Err: err}
	}
	if req.TTY {
		return startTTY(cmd, req)
	}
	return startPipes(cmd, req)
}

func startPipes(cmd *exec.Cmd, req ExecRequest) (*process, error) {
	var parentEnds, childEnds []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	pipe := func() (*os.File, *os.File, error) {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(parentEnds)
			closeAll(childEnds)
			return nil, nil, fmt.Errorf("pipe: %w", err)
		}
		return r, w, nil
	}
	p := &process{cmd: cmd}
	outR, outW, err := pipe()
	if err != nil {
		return nil, err
	}
	parentEnds, childEnds = append(parentEnds, outR), append(childEnds, outW)
	errR, errW, err := pipe()
	if err != nil {
		return nil, err
	}
	parentEnds, childEnds = append(parentEnds, errR), append(childEnds, errW)
	cmd.Stdout, cmd.Stderr = outW, errW
	if req.Stdin {
		inR, inW, err := pipe()
		if err != nil {
			return nil, err
		}
		parentEnds, childEnds = append(parentEnds, inW), append(childEnds, inR)
		cmd.Stdin = inR
		p.stdin = inW
	}
	p.outputs = []output{{frameStdout, outR}, {frameStderr, errR}}
	// Its own process group, so a signal frame or a lost host reaches the
	// whole pipeline the command started, not just its first process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	closeAll(childEnds)
	if err != nil {
		closeAll(parentEnds)
		return nil, err
	}
	return p, nil
}

func startTTY(cmd *exec.Cmd, req ExecRequest) (*process, error) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open pty: %w", err)
	}
	defer tty.Close()
	size := &pty.Winsize{Rows: req.Rows, Cols: req.Cols}
	if size.Rows == 0 || size.Cols == 0 {
		size.Rows, size.Cols = 24, 80
	}
	if err := pty.Setsize(tty, size); err != nil {
		ptmx.Close()
		return nil, fmt.Errorf("set pty size: %w", err)
	}
	master, err := pollable(ptmx)
	if err != nil {
		return nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		master.Close()
		return nil, err
	}
	return &process{cmd: cmd, tty: master, stdin: master, outputs: []output{{frameStdout, master}}}, nil
}

// pollable replaces f (left in blocking mode by pty's helpers, which call
// Fd) with a non-blocking duplicate that Go's poller manages, so reads
// honour deadlines and Close interrupts them.
func pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	var fd int
	var dupErr error
	raw, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("pty master: %w", err)
	}
	if err := raw.Control(func(old uintptr) {
		fd, dupErr = unix.FcntlInt(old, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, fmt.Errorf("pty master: %w", err)
	}
	if dupErr != nil {
		return nil, fmt.Errorf("dup pty master: %w", dupErr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pty master: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), nil
}

// serveFrames applies the host's frames until the stream ends.
func (p *process) serveFrames(r io.Reader, q *stdinQueue) error {
	for {
		typ, b, err := readFrame(r)
		if err != nil {
			return err
		}
		switch typ {
		case frameStdin:
			if p.stdin == nil {
				continue
			}
			if err := q.push(b); err != nil {
				return err
			}
		case frameStdinEOF:
			q.finish()
		case frameResize:
			s, err := parseSize(b)
			if err != nil {
				return err
			}
			if p.tty != nil {
				p.resize(s)
			}
		case frameSignal:
			if sig, ok := signalByName(string(b)); ok {
				p.signal(sig)
			}
		default:
			return fmt.Errorf("unexpected exec frame type %d", typ)
		}
	}
}

func (p *process) resize(s Size) {
	// pty.Setsize would call Fd and put the master back in blocking mode.
	raw, err := p.tty.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: s.Rows, Col: s.Cols})
	})
}

// signal sends sig to the process group; with a tty also to the
// terminal's foreground group (a job the shell started).
func (p *process) signal(sig unix.Signal) {
	if p.reaped.Load() {
		return
	}
	pid := p.cmd.Process.Pid
	unix.Kill(-pid, sig)
	if p.tty == nil {
		return
	}
	raw, err := p.tty.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		if pgrp, err := unix.IoctlGetInt(int(fd), unix.TIOCGPGRP); err == nil && pgrp > 0 && pgrp != pid {
			unix.Kill(-pgrp, sig)
		}
	})
}

func signalByName(name string) (unix.Signal, bool) {
	switch name {
	case "INT":
		return unix.SIGINT, true
	case "TERM":
		return unix.SIGTERM, true
	case "KILL":
		return unix.SIGKILL, true
	case "HUP":
		return unix.SIGHUP, true
	case "QUIT":
		return unix.SIGQUIT, true
	case "USR1":
		return unix.SIGUSR1, true
	case "USR2":
		return unix.SIGUSR2, true
	case "WINCH":
		return unix.SIGWINCH, true
	}
	return 0, false
}

// feedStdin writes queued stdin to the process and acks every chunk, which
// lets the host send more. After a write fails (the process closed its
// stdin) input is still acked and dropped, as a closed pipe would.
func (p *process) feedStdin(q *stdinQueue, fw *frameWriter, tty bool) {
	broken := false
	for {
		b, more := q.pop()
		if len(b) > 0 {
			if !broken {
				if _, err := p.stdin.Write(b); err != nil {
					broken = true
				}
			}
			q.release(len(b))
			if fw.writeUint32(frameStdinAck, uint32(len(b))) != nil {
				return
			}
		}
		if !more {
			break
		}
	}
	if broken || q.aborted() {
		return
	}
	if tty {
		// A terminal has no EOF of its own: send the EOF character, which
		// ends input for a reader at the start of a line.
		p.stdin.Write([]byte{4})
		return
	}
	p.stdin.Close()
}

func pumpOutput(o output, fw *frameWriter, finished *atomic.Bool) {
	b := make([]byte, ioChunk)
	hostGone := false
	for {
		if finished.Load() {
			o.f.SetReadDeadline(time.Now().Add(drainIdle))
		}
		n, err := o.f.Read(b)
		if n > 0 && !hostGone {
			// Writing before the next read is the backpressure: a slow host
			// leaves the pipe full and the process blocked.
			if fw.write(o.typ, b[:n]) != nil {
				hostGone = true
			}
		}
		if err != nil {
			return
		}
	}
}

// exitCode is the status a shell would report: the exit code, or 128+signo.
func exitCode(ps *os.ProcessState, err error) int {
	if ps == nil {
		return 255
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// startFailure maps a start error to a shell's codes: 127 not found, 126
// found but not runnable (permissions, format, working directory).
func startFailure(err error) (int, string) {
	var nf *notFoundError
	if errors.As(err, &nf) {
		return 127, err.Error()
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Op != "chdir" && errors.Is(err, fs.ErrNotExist) {
		return 127, err.Error()
	}
	return 126, err.Error()
}

type notFoundError struct{ name string }

func (e *notFoundError) Error() string {
	return fmt.Sprintf("exec %q: executable file not found in PATH", e.name)
}

// lookPath resolves name against the child's PATH, not the agent's.
func lookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	var denied error
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() {
			continue
		}
		if fi.Mode()&0o111 != 0 {
			return p, nil
		}
		if denied == nil {
			denied = fmt.Errorf("exec %q: %s is not executable", name, p)
		}
	}
	if denied != nil {
		return "", denied
	}
	return "", &notFoundError{name}
}

// execEnv is the default environment with req.Env applied on top.
func execEnv(home string, req ExecRequest) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home,
		"LANG=C.UTF-8",
		"USER=root",
		"LOGNAME=root",
	}
	if req.TTY {
		env = append(env, "TERM=xterm-256color")
	}
	for _, e := range req.Env {
		k, _, _ := strings.Cut(e, "=")
		replaced := false
		for i, d := range env {
			if strings.HasPrefix(d, k+"=") {
				env[i], replaced = e, true
				break
			}
		}
		if !replaced {
			env = append(env, e)
		}
	}
	return env
}

func envValue(env []string, key string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, key+"="); ok {
			return v
		}
	}
	return ""
}

// stdinQueue carries stdin from the frame reader to the writer without ever
// blocking the reader (signals and a lost host must still be noticed while
// the process is not reading). The host's window bounds its size.
type stdinQueue struct {
	mu      sync.Mutex
	cond    sync.Cond
	buf     []byte
	pending int  // pushed and not yet released
	eof     bool // the host finished stdin
	abort   bool // the stream is gone
}

func newStdinQueue() *stdinQueue {
	q := &stdinQueue{}
	q.cond.L = &q.mu
	return q
}

func (q *stdinQueue) push(b []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pending+len(b) > stdinWindow {
		return fmt.Errorf("host sent %d bytes of stdin beyond the %d byte window", q.pending+len(b)-stdinWindow, stdinWindow)
	}
	q.pending += len(b)
	q.buf = append(q.buf, b...)
	q.cond.Broadcast()
	return nil
}

// pop returns up to one chunk, blocking until there is one; more is false
// once the queue is drained and finished or aborted.
func (q *stdinQueue) pop() (b []byte, more bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.buf) == 0 && !q.eof && !q.abort {
		q.cond.Wait()
	}
	if q.abort {
		return nil, false
	}
	n := min(len(q.buf), ioChunk)
	b = append([]byte(nil), q.buf[:n]...)
	q.buf = q.buf[n:]
	return b, len(q.buf) > 0 || !q.eof
}

func (q *stdinQueue) release(n int) {
	q.mu.Lock()
	q.pending -= n
	q.mu.Unlock()
}

func (q *stdinQueue) finish() {
	q.mu.Lock()
	q.eof = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *stdinQueue) close() {
	q.mu.Lock()
	q.abort = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *stdinQueue) aborted() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.abort
}
