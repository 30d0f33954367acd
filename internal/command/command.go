// Package command runs external programs by argv (never through a shell) and
// turns their failures into errors that carry the argv and the tail of what
// they printed.
package command

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Error is a failed external command.
type Error struct {
	Argv []string
	Err  error
	Tail string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %v", strings.Join(e.Argv, " "), e.Err)
	if e.Tail != "" {
		s += ": " + e.Tail
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Tail returns the last n lines of out, trimmed and joined with " | " so the
// error stays on one line.
func Tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " | ")
}

// Output runs argv and returns its stdout; on failure the error carries
// the tail of stderr (or stdout when stderr is empty).
func Output(ctx context.Context, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		out := stderr.Bytes()
		if len(bytes.TrimSpace(out)) == 0 {
			out = stdout.Bytes()
		}
		return stdout.Bytes(), &Error{Argv: argv, Err: err, Tail: Tail(out, 5)}
	}
	return stdout.Bytes(), nil
}

// Run is Output without the output.
func Run(ctx context.Context, argv ...string) error {
	_, err := Output(ctx, argv...)
	return err
}
