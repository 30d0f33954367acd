package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/sshkeys"
	"github.com/spf13/cobra"
)

func (a *App) vmSSHCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ssh NAME [-- SSH_ARG...]",
		Short: "Open an ssh session to a running VM",
		Long: `Run the system ssh client as root@VM with banger's key and banger's
known_hosts (host keys are learned through the guest agent at boot, and
checked strictly). Arguments after -- go to ssh after the destination: ssh
options first (-L, -t, -p ...), then a remote command. banger exits with
ssh's status.`,
		Example: `  banger vm ssh dev
  banger vm ssh dev -- uname -a
  banger vm ssh dev -- -L 8080:localhost:80 -N`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.completeNames("vm"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 && cmd.ArgsLenAtDash() != 1 {
				return api.WithHint(api.Errorf(api.CodeBadRequest, "put ssh arguments after --"), "banger vm ssh NAME -- [SSH_ARG...]")
			}
			code, err := a.sshSession(cmd.Context(), args[0], args[1:])
			if err != nil {
				return err
			}
			if code != 0 {
				return &ExitError{Code: code}
			}
			return nil
		},
	}
	return cmd
}

// sshSession runs the system ssh client to VM name with the terminal passed
// through, and returns ssh's exit status (128+N when a signal ended it).
// It returns when the session ends, so a caller can act afterwards (vm run
// --rm).
func (a *App) sshSession(ctx context.Context, name string, extra []string) (int, error) {
	info, err := a.Client().SSHInfo(ctx, name)
	if err != nil {
		return 0, err
	}
	if !info.Running {
		return 0, api.WithHint(api.Errorf(api.CodeConflict, "vm %q is not running", name), "start it: banger vm start "+name)
	}
	if info.IP == "" || info.KeyPath == "" || info.KnownHosts == "" {
		return 0, fmt.Errorf("ssh to vm %q: the daemon sent no address, key or known_hosts", name)
	}
	argv := sshkeys.Command(info, extra)
	bin, err := exec.LookPath(argv[0])
	if err != nil {
		return 0, api.WithHint(fmt.Errorf("ssh to vm %q: %w", name, err), "install the OpenSSH client (Debian: apt install openssh-client)")
	}
	c := exec.Command(bin, argv[1:]...)
	c.Args[0] = argv[0]
	c.Stdin, c.Stdout, c.Stderr = a.In, a.Out, a.Err

	// The session owns the terminal's signals; banger outlives them to
	// report ssh's status. Signals sent to banger alone reach ssh too.
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigc)
	if err := c.Start(); err != nil {
		return 0, fmt.Errorf("ssh to vm %q: %w", name, err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-sigc:
				c.Process.Signal(s)
			}
		}
	}()
	err = c.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("ssh to vm %q: %w", name, err)
	}
	return 0, nil
}
