package cli

import (
	"fmt"

	"github.com/banger/banger/internal/doctor"
	"github.com/spf13/cobra"
)

func (a *App) doctorCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check that this host can run banger, and say how to fix what it cannot",
		Long: `Check the host (architecture, /dev/kvm, /dev/net/tun), the hypervisors
(Firecracker, QEMU, and which one banger will use and why), the host tools
banger runs, the services and their sockets, the bridge and the DNS port, and
print the effective VM defaults with where each value comes from (config file,
host heuristic or built-in floor).

Each check passes, warns or fails, with the fix in one line. The exit status is
non-zero when something blocks 'banger vm run'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := doctor.Run(cmd.Context(), doctor.Env{Layout: a.Layout, Home: a.Home, Client: a.Client()})
			if asJSON {
				if err := writeJSON(a.Out, r); err != nil {
					return err
				}
			} else {
				a.printDoctor(r)
			}
			if r.Blocking() {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *App) printDoctor(r doctor.Report) {
	s := a.style
	t := newTable(a.Out)
	group := ""
	for _, c := range r.Checks {
		if c.Group != group {
			if group != "" {
				fmt.Fprintln(t)
			}
			group = c.Group
			fmt.Fprintf(t, "%s\n", s.Bold(group))
		}
		var mark string
		switch c.Status {
		case doctor.Pass:
			mark = s.Pass("ok  ")
		case doctor.Warn:
			mark = s.Warn("warn")
		default:
			mark = s.Fail("FAIL")
		}
		fmt.Fprintf(t, "  %s\t%s\t%s\n", mark, c.Name, c.Detail)
		if c.Fix != "" && c.Status != doctor.Pass {
			fmt.Fprintf(t, "  \t\t%s\n", s.Dim("fix: "+c.Fix))
		}
	}
	if len(r.Defaults) > 0 {
		fmt.Fprintf(t, "\n%s\n", s.Bold("vm defaults"))
		for _, d := range r.Defaults {
			fmt.Fprintf(t, "  \t%s\t%s\t%s\n", d.Key, d.Value, s.Dim(d.Source))
		}
	}
	t.Flush()
	fails, warns := 0, 0
	for _, c := range r.Checks {
		switch c.Status {
		case doctor.Fail:
			fails++
		case doctor.Warn:
			warns++
		}
	}
	switch {
	case fails > 0:
		fmt.Fprintf(a.Out, "\n%s: %d problem(s) block banger vm run, %d warning(s)\n", s.Fail("not ready"), fails, warns)
	default:
		fmt.Fprintf(a.Out, "\n%s (%d warning(s))\n", s.Pass("ready"), warns)
	}
}
