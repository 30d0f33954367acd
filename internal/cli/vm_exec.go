package cli

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/guest/agent"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func (a *App) vmExecCmd() *cobra.Command {
	var tty, interactive bool
	var env []string
	var dir string
	cmd := &cobra.Command{
		Use:   "exec NAME [-t] [-i] [-e KEY=VALUE] [-w DIR] -- COMMAND [ARG...]",
		Short: "Run a command in a running VM and exit with its status",
		Long: `Run COMMAND in the VM through its agent (no ssh involved) and exit with the
command's exit status. The argv is run as given, never through a shell: pass
"sh -c '...'" yourself for shell syntax. stdout and stderr stay separate;
stdin is forwarded when it is not a terminal (pipes, files), or with -i.
-t runs the command on a pseudo-terminal (for interactive programs).`,
		Example: `  banger vm exec dev -- uname -r
  banger vm exec dev -- sh -c 'exit 42'; echo $?
  echo hello | banger vm exec dev -- cat
  banger vm exec -t dev -- bash`,
		Args:              cobra.MinimumNArgs(2),
		ValidArgsFunction: a.completeNames("vm"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return api.WithHint(api.Errorf(api.CodeBadRequest, "put the command after --"), "banger vm exec NAME -- COMMAND [ARG...]")
			}
			for _, e := range env {
				if !strings.Contains(e, "=") {
					return api.Errorf(api.CodeBadRequest, "-e %q: want KEY=VALUE", e)
				}
			}
			code, err := a.exec(cmd.Context(), args[0], agent.ExecRequest{Argv: args[1:], Env: env, Dir: dir, TTY: tty}, interactive)
			if err != nil {
				return err
			}
			if code != 0 {
				return &ExitError{Code: code}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "run on a pseudo-terminal")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "forward stdin even when it is a terminal")
	cmd.Flags().StringArrayVarP(&env, "env", "e", nil, "set an environment variable (repeatable)")
	cmd.Flags().StringVarP(&dir, "workdir", "w", "", "working directory in the guest (default /root)")
	return cmd
}

// exec runs req in the VM and returns the guest's exit status. Signals the
// CLI receives are forwarded to the guest process; with a tty the local
// terminal is put in raw mode and its size follows the window.
func (a *App) exec(ctx context.Context, vm string, req agent.ExecRequest, interactive bool) (int, error) {
	// The root context ends on SIGINT; here SIGINT belongs to the guest.
	ctx = context.WithoutCancel(ctx)
	ag := a.Client().Agent(vm)
	defer ag.Close()

	var stdin io.Reader
	inFile, inIsFile := a.In.(*os.File)
	inTTY := inIsFile && term.IsTerminal(int(inFile.Fd()))
	if !inTTY || interactive || req.TTY {
		stdin = a.In
	}
	resize := make(chan agent.Size, 1)
	signals := make(chan string, 4)
	sigc := make(chan os.Signal, 4)
	if req.TTY && inTTY {
		if w, h, err := term.GetSize(int(inFile.Fd())); err == nil {
			req.Cols, req.Rows = uint16(w), uint16(h)
		}
		old, err := term.MakeRaw(int(inFile.Fd()))
		if err == nil {
			defer term.Restore(int(inFile.Fd()), old)
		}
		signal.Notify(sigc, syscall.SIGWINCH, syscall.SIGTERM, syscall.SIGHUP)
	} else {
		signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	}
	defer signal.Stop(sigc)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-sigc:
				if s == syscall.SIGWINCH {
					if w, h, err := term.GetSize(int(inFile.Fd())); err == nil {
						select {
						case resize <- agent.Size{Rows: uint16(h), Cols: uint16(w)}:
						default:
						}
					}
					continue
				}
				name := strings.TrimPrefix(unixSignalName(s), "SIG")
				select {
				case signals <- name:
				default:
				}
			}
		}
	}()
	code, err := ag.Exec(ctx, req, stdin, a.Out, a.Err, resize, signals)
	var se *agent.StartError
	if errors.As(err, &se) {
		// Like a shell: say why, exit 127 (not found) or 126 (not runnable).
		a.printError(api.Errorf(api.CodeBadRequest, "%s", se.Message))
		return se.Code, nil
	}
	return code, err
}

func unixSignalName(s os.Signal) string {
	switch s {
	case syscall.SIGINT:
		return "INT"
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGHUP:
		return "HUP"
	case syscall.SIGQUIT:
		return "QUIT"
	}
	return s.String()
}
