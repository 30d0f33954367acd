package cli

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/config"
	"github.com/banger/banger/internal/paths"
	"github.com/spf13/cobra"
)

// addVMCmds adds the vm commands.
func (a *App) addVMCmds(root *cobra.Command) {
	vm := &cobra.Command{
		Use:   "vm",
		Short: "Create, run and manage VMs",
		Long: `Each VM has its own kernel, systemd, sshd, Docker and git. Its root filesystem
is the image, shared read-only, under a writable layer of its own; /root is a
work disk of its own. Names are DNS labels (a-z, 0-9, '-').`,
	}
	vm.AddCommand(a.vmCreateCmd(), a.vmStartCmd(), a.vmStopCmd(), a.vmRestartCmd(), a.vmKillCmd(),
		a.vmDeleteCmd(), a.vmListCmd(), a.vmShowCmd(), a.vmLogsCmd(), a.vmExecCmd(),
		a.vmSetCmd(), a.vmPortsCmd(), a.vmStatsCmd(), a.vmPruneCmd(), a.vmRunCmd(), a.vmPortForwardCmd(),
		a.vmSSHCmd(), a.vmProxyCmd())
	ps := a.vmListCmd()
	ps.Use, ps.Short, ps.Hidden = "ps", "List VMs (same as vm list)", false
	root.AddCommand(vm, ps)
}

// config loads the user's effective config (for defaults the CLI shows).
func (a *App) config() (*config.Config, error) {
	return config.Load(config.LoadOptions{Files: config.Files(a.Layout, paths.User{Home: a.Home}), Home: a.Home, Host: config.DetectHost()})
}

// stageProgress prints each new stage of a long operation on stderr.
func (a *App) stageProgress() func(api.Event) {
	var mu sync.Mutex
	last := ""
	return func(ev api.Event) {
		if ev.Type != api.EventProgress || ev.Message == "" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		line := ev.Stage + ": " + ev.Message
		if line == last {
			return
		}
		last = line
		fmt.Fprintf(a.Err, "%s %s\n", a.errStyle().Dim("==>"), line)
	}
}

func (a *App) errStyle() Style { return NewStyle(a.Err) }

// eachVM runs fn for every named VM concurrently and reports every failure.
func (a *App) eachVM(ctx context.Context, names []string, fn func(ctx context.Context, name string) error) error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(ctx, n)
		}()
	}
	wg.Wait()
	if len(names) == 1 {
		return errs[0]
	}
	failed := 0
	for i, err := range errs {
		if err != nil {
			failed++
			a.printError(fmt.Errorf("%s: %w", names[i], err))
		}
	}
	if failed > 0 {
		return &ExitError{Code: 1}
	}
	return errors.Join(errs...)
}
