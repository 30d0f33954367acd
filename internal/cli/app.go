// Package cli is the banger command line: cobra, one file per verb. It talks
// only to bangerd (through internal/client) and prints to the writers it is
// given; it never logs.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/buildinfo"
	"github.com/banger/banger/internal/client"
	"github.com/banger/banger/internal/paths"
	"github.com/spf13/cobra"
)

// App is the CLI's environment: its streams and where things are.
type App struct {
	In       io.Reader
	Out, Err io.Writer
	Layout   paths.Layout
	// Home is the invoking user's home (config, ssh key).
	Home string

	style    Style
	client   *client.Client
	warnOnce sync.Once
}

// ExitError makes banger exit with Code without printing anything more
// (the guest command's status, or a doctor verdict already printed).
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// NewApp builds an App on the process's real streams and environment.
func NewApp() *App {
	home, _ := os.UserHomeDir()
	return &App{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Layout: paths.FromEnv(), Home: home}
}

// Client returns the (lazily created) daemon client.
func (a *App) Client() *client.Client {
	if a.client == nil {
		a.client = client.New(a.Layout.DaemonSocket())
	}
	return a.client
}

// warnVersionSkew says, once, when the daemon runs another banger version.
func (a *App) warnVersionSkew() {
	if a.client == nil {
		return
	}
	dv, ok := a.client.DaemonVersion()
	if !ok || dv.Version == buildinfo.Get().Version {
		return
	}
	a.warnOnce.Do(func() {
		fmt.Fprintf(a.Err, "%s banger CLI is %s but bangerd is %s; after upgrading, run: sudo banger system restart\n",
			a.style.Warn("warning:"), buildinfo.Get().Version, dv.Version)
	})
}

// Run executes the command line and returns the process exit code.
func (a *App) Run(ctx context.Context, args []string) int {
	a.style = NewStyle(a.Out)
	root := a.NewRoot()
	root.SetArgs(args)
	root.SetIn(a.In)
	root.SetOut(a.Out)
	root.SetErr(a.Err)
	err := root.ExecuteContext(ctx)
	a.warnVersionSkew()
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	a.printError(err)
	return 1
}

// printError renders one line (plus a hint line when there is one).
func (a *App) printError(err error) {
	es := NewStyle(a.Err)
	msg := err.Error()
	var ae *api.Error
	if errors.As(err, &ae) && ae.OpID != "" {
		msg += " " + es.Dim("(op "+ae.OpID+")")
	}
	fmt.Fprintf(a.Err, "%s %s\n", es.Fail("error:"), msg)
	if h := api.HintOf(err); h != "" {
		fmt.Fprintf(a.Err, "%s %s\n", es.Dim("hint:"), h)
	}
}

// NewRoot builds the command tree.
func (a *App) NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "banger",
		Short: "One-command development sandboxes on Firecracker microVMs",
		Long: `banger runs development sandboxes in microVMs: each VM has its own kernel,
systemd, sshd, Docker and git. The owner daemon (bangerd) does the work; this
CLI talks to it over a unix socket.

Start with: banger doctor, then banger vm run (a fresh VM and a shell in it).`,
		Version:       buildinfo.Get().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		CompletionOptions: cobra.CompletionOptions{
			DisableDefaultCmd: true,
		},
	}
	root.SetVersionTemplate("banger {{.Version}}\n")
	root.AddCommand(
		a.versionCmd(),
		a.completionCmd(),
		a.doctorCmd(),
		a.systemCmd(),
		a.sshConfigCmd(),
	)
	a.addArtefactCmds(root)
	a.addVMCmds(root)
	return root
}
