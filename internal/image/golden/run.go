package golden

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// tailSize bounds how much of a failed command's output goes into its error.
const tailSize = 2048

// runner starts the builder's external commands. Each one gets its own
// process group so that a cancelled build also kills what it spawned
// (debootstrap runs dpkg, which runs maintainer scripts).
type runner struct {
	log io.Writer // full output of every command
}

// command describes one invocation.
type command struct {
	argv   []string
	env    []string     // the complete environment when non-nil
	chroot string       // run inside this root (the path to argv[0] is resolved there)
	dir    string       // working directory (inside chroot if set)
	stdout io.Writer    // captured stdout; stdout goes to the log otherwise
	onLine func(string) // called for each line of combined output
}

// run executes c and returns an error naming its argv and the tail of its
// output when it fails.
func (r runner) run(ctx context.Context, c command) error {
	if len(c.argv) == 0 {
		return errors.New("run: empty argv")
	}
	if c.chroot != "" && !filepath.IsAbs(c.argv[0]) {
		// A bare name would be looked up in the host's PATH.
		return fmt.Errorf("run %q in %s: want an absolute path inside the root", c.argv, c.chroot)
	}
	cmd := exec.CommandContext(ctx, c.argv[0], c.argv[1:]...)
	cmd.Env = c.env
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Chroot: c.chroot}
	cmd.Cancel = func() error {
		// The negative pid addresses the whole process group.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 10 * time.Second

	log := r.log
	if log == nil {
		log = io.Discard
	}
	tail := &tailBuffer{max: tailSize}
	lines := &lineSplitter{fn: c.onLine}
	// Stdout and stderr share one writer, so exec gives them one pipe and
	// their lines stay in order.
	combined := io.MultiWriter(log, tail, lines)
	cmd.Stderr = combined
	cmd.Stdout = combined
	if c.stdout != nil {
		cmd.Stdout = c.stdout
	}

	err := cmd.Run()
	lines.flush()
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = fmt.Errorf("%w (%w)", ctxErr, err)
	}
	where := ""
	if c.chroot != "" {
		where = " in " + c.chroot
	}
	out := strings.TrimSpace(tail.String())
	if out == "" {
		return fmt.Errorf("run %q%s: %w", c.argv, where, err)
	}
	return fmt.Errorf("run %q%s: %w\n%s", c.argv, where, err, out)
}

// output runs c and returns its stdout; stderr goes to the log.
func (r runner) output(ctx context.Context, c command) ([]byte, error) {
	var buf bytes.Buffer
	c.stdout = &buf
	err := r.run(ctx, c)
	return buf.Bytes(), err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	s := string(t.buf)
	if len(t.buf) == t.max {
		// Start at a line boundary rather than mid-line.
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return s
}

// lineSplitter calls fn once per complete line.
type lineSplitter struct {
	fn      func(string)
	partial []byte
}

func (l *lineSplitter) Write(p []byte) (int, error) {
	if l.fn == nil {
		return len(p), nil
	}
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.fn(strings.TrimRight(string(l.partial[:i]), "\r"))
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

func (l *lineSplitter) flush() {
	if l.fn != nil && len(l.partial) > 0 {
		l.fn(string(l.partial))
		l.partial = nil
	}
}
