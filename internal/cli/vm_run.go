package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/guest/agent"
	"github.com/banger/banger/internal/portfwd"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func (a *App) vmRunCmd() *cobra.Command {
	var f vmSpecFlags
	var nat, rm, detach bool
	var forwards []string
	cmd := &cobra.Command{
		Use:   "run [flags] [-- COMMAND [ARG...]]",
		Short: "Create a fresh VM and open a shell in it, or run a command there",
		Long: `Create a VM from the default image (built on first use), boot it and either
open an interactive ssh session in it (no COMMAND) or run COMMAND there with
its stdout, stderr and exit status passed through, as if it ran locally.

After a session the VM keeps running (banger says how to stop it); --rm
deletes it when the session or command ends, even on Ctrl-C, but keeps it,
and says so, when the guest never became reachable, so 'banger vm logs' can
show why. -d returns as soon as the VM is ready.

-p [HOSTADDR:]HOSTPORT:GUESTPORT forwards a host TCP port (loopback unless
HOSTADDR says otherwise) to the guest while it runs.`,
		Example: `  banger vm run
  banger vm run --rm -- make test
  banger vm run --name web -d -p 8080:80 --nat
  banger vm run --rm -- sh -c 'exit 42'; echo $?`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if n := cmd.ArgsLenAtDash(); n > 0 || (n < 0 && len(args) > 0) {
				return api.WithHint(api.Errorf(api.CodeBadRequest, "unexpected argument %q before --", args[0]),
					"put the command after --: banger vm run -- COMMAND")
			}
			// Refuse contradictions before anything is created.
			if detach && rm {
				return api.Errorf(api.CodeBadRequest, "-d and --rm contradict each other: a detached VM outlives the command")
			}
			if detach && len(args) > 0 {
				return api.Errorf(api.CodeBadRequest, "-d takes no command: run it later with banger vm exec NAME -- COMMAND")
			}
			req, err := f.request()
			if err != nil {
				return err
			}
			for _, p := range forwards {
				s, err := portfwd.ParseSpec(p)
				if err != nil {
					return api.Errorf(api.CodeBadRequest, "-p %q: %v", p, err)
				}
				req.Forwards = append(req.Forwards, s.String())
			}
			req.NAT = nat
			return a.run(cmd.Context(), req, args, rm, detach)
		},
	}
	cfg, _ := a.config()
	f.register(cmd, cfg)
	cmd.Flags().BoolVar(&nat, "nat", false, "let the guest reach out through the host")
	cmd.Flags().BoolVar(&rm, "rm", false, "delete the VM when the session or command ends")
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "return once the VM is ready")
	cmd.Flags().StringArrayVarP(&forwards, "publish", "p", nil, "forward [HOSTADDR:]HOSTPORT:GUESTPORT to the guest (repeatable)")
	return cmd
}

// run is vm run after the flags are checked.
func (a *App) run(ctx context.Context, req api.CreateVM, argv []string, rm, detach bool) error {
	fmt.Fprintln(a.Err, specLine(req))
	name := req.Name
	progress := a.stageProgress()
	v, err := a.Client().CreateVM(ctx, req, func(ev api.Event) {
		if ev.VM != "" {
			name = ev.VM
		}
		progress(ev)
	})
	if err != nil {
		if name != "" && rm {
			if ctx.Err() != nil {
				// Interrupted: the user wants nothing left behind.
				a.deleteAfterRun(name)
			} else if _, gerr := a.Client().GetVM(context.WithoutCancel(ctx), name); gerr == nil {
				fmt.Fprintf(a.Err, "%s the guest never became reachable, so %s was kept for inspection: banger vm logs %s; then banger vm delete %s\n",
					a.errStyle().Warn("note:"), name, name, name)
			}
		}
		return err
	}
	for _, f := range v.Forwards {
		fmt.Fprintf(a.Err, "%s forwarding %s\n", a.errStyle().Dim("==>"), f)
	}
	if detach {
		fmt.Fprintf(a.Out, "%s is running at %s (%s.vm)\n", v.Name, v.IP, v.Name)
		fmt.Fprintf(a.Out, "connect: banger vm ssh %s   stop: banger vm stop %s   delete: banger vm delete %s\n", v.Name, v.Name, v.Name)
		return nil
	}
	var code int
	if len(argv) > 0 {
		inF, inOK := a.In.(*os.File)
		outF, outOK := a.Out.(*os.File)
		tty := inOK && outOK && term.IsTerminal(int(inF.Fd())) && term.IsTerminal(int(outF.Fd()))
		code, err = a.exec(ctx, v.Name, agent.ExecRequest{Argv: argv, TTY: tty}, false)
	} else {
		code, err = a.sshSession(ctx, v.Name, nil)
	}
	if rm {
		a.deleteAfterRun(v.Name)
	} else if len(argv) == 0 {
		fmt.Fprintf(a.Err, "%s is still running: banger vm ssh %s to return, banger vm stop %s or banger vm delete %s when done\n",
			v.Name, v.Name, v.Name, v.Name)
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

// deleteAfterRun deletes a --rm VM on a fresh context, so a Ctrl-C that
// ended the command does not also cancel the cleanup.
func (a *App) deleteAfterRun(name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Client().DeleteVM(ctx, name); err != nil && !errors.Is(err, api.ErrNotFound) {
		a.printError(fmt.Errorf("--rm: delete %s: %w", name, err))
		return
	}
	fmt.Fprintf(a.Err, "%s deleted %s\n", a.errStyle().Dim("==>"), name)
}
