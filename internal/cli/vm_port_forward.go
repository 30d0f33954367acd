package cli

import (
	"fmt"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/portfwd"
	"github.com/spf13/cobra"
)

func (a *App) vmPortForwardCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "port-forward NAME [HOSTADDR:]HOSTPORT:GUESTPORT...",
		Short: "Forward host TCP ports to a VM",
		Long: `Forward each host TCP port (on loopback unless HOSTADDR says otherwise) to the
VM's GUESTPORT. The forwards open now if the VM runs, are kept for its later
starts, and close whenever it stops. Same syntax as vm run -p.`,
		Example:           "  banger vm port-forward web 8080:80 0.0.0.0:8443:443",
		Args:              cobra.MinimumNArgs(2),
		ValidArgsFunction: a.completeNames("vm"),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, s := range args[1:] {
				if _, err := portfwd.ParseSpec(s); err != nil {
					return api.Errorf(api.CodeBadRequest, "%v", err)
				}
			}
			v, err := a.Client().AddForwards(cmd.Context(), args[0], args[1:])
			if err != nil {
				return err
			}
			for _, f := range v.Forwards {
				fmt.Fprintf(a.Out, "%s %s\n", v.Name, f)
			}
			return nil
		},
	}
}
