package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/install"
	"github.com/banger/banger/internal/paths"
	"github.com/spf13/cobra"
)

// SystemStatus is `banger system status --json`.
type SystemStatus struct {
	Installed   bool              `json:"installed"`
	InstallFile string            `json:"install_file"`
	Install     *install.Metadata `json:"install,omitempty"`
	Units       map[string]string `json:"units,omitempty"`
	Daemon      *api.DaemonStatus `json:"daemon,omitempty"`
	DaemonError string            `json:"daemon_error,omitempty"`
}

func (a *App) systemStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the services' state, versions and socket health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			st := SystemStatus{InstallFile: a.Layout.InstallFile()}
			if m, err := install.ReadMetadata(a.Layout.InstallFile()); err == nil {
				st.Installed, st.Install = true, &m
				if m.Systemd {
					st.Units = map[string]string{}
					for _, u := range []string{paths.HelperUnit, paths.DaemonUnit} {
						st.Units[u] = install.UnitState(ctx, u)
					}
				}
			}
			if ds, err := a.Client().Status(ctx); err == nil {
				st.Daemon = &ds
			} else {
				st.DaemonError = err.Error()
			}
			if asJSON {
				return writeJSON(a.Out, st)
			}
			a.printSystemStatus(st)
			if st.Daemon == nil {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *App) printSystemStatus(st SystemStatus) {
	s := a.style
	t := newTable(a.Out)
	if st.Install != nil {
		m := st.Install
		fmt.Fprintf(t, "installed\t%s (owner %s, uid %d, %s)\n", m.Version, m.OwnerUser, m.OwnerUID, m.InstalledAt.Format(time.RFC3339))
	} else {
		fmt.Fprintf(t, "installed\t%s\n", s.Warn("no ("+st.InstallFile+" missing)"))
	}
	for _, u := range []string{paths.HelperUnit, paths.DaemonUnit} {
		if state, ok := st.Units[u]; ok {
			v := s.Pass(state)
			if state != "active" {
				v = s.Fail(state)
			}
			fmt.Fprintf(t, "%s\t%s\n", u, v)
		}
	}
	if d := st.Daemon; d != nil {
		fmt.Fprintf(t, "bangerd\t%s %s (pid %d, uid %d, %s)\n", s.Pass("running"), d.Version.Version, d.PID, d.UID, d.Socket)
		if d.Helper.Reachable {
			fmt.Fprintf(t, "bangerd-root\t%s %s (%s)\n", s.Pass("running"), d.Helper.Version, d.Helper.Socket)
		} else {
			fmt.Fprintf(t, "bangerd-root\t%s %s\n", s.Fail("unreachable"), d.Helper.Error)
		}
	} else {
		fmt.Fprintf(t, "bangerd\t%s %s\n", s.Fail("unreachable"), st.DaemonError)
	}
	t.Flush()
}
