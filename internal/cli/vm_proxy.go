package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/spf13/cobra"
)

func (a *App) vmProxyCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "proxy HOST PORT",
		Short:  "Join stdin/stdout to a VM's TCP port (ssh's ProxyCommand)",
		Long:   `HOST is NAME.vm (or NAME). Used by the ssh config "banger ssh-config" writes.`,
		Hidden: true,
		Args:   cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.proxy(cmd.Context(), args[0], args[1])
		},
	}
}

// proxy resolves host through the daemon, connects to its port and copies
// both ways until the VM's side closes.
func (a *App) proxy(ctx context.Context, host, port string) error {
	name := strings.TrimSuffix(strings.TrimSuffix(host, "."), ".vm")
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return api.Errorf(api.CodeBadRequest, "port %q: want 1-65535", port)
	}
	v, err := a.Client().GetVM(ctx, name)
	if err != nil {
		return err
	}
	if v.State != api.StateRunning {
		return api.WithHint(api.Errorf(api.CodeConflict, "vm %q is %s, not running", name, v.State), "start it: banger vm start "+name)
	}
	addr := netip.AddrPortFrom(v.IP, uint16(p)).String()
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("connect to vm %q at %s: %w", name, addr, err)
	}
	defer conn.Close()
	go func() {
		io.Copy(conn, a.In)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}()
	if _, err := io.Copy(a.Out, conn); err != nil && ctx.Err() == nil {
		return fmt.Errorf("proxy to vm %q: %w", name, err)
	}
	return nil
}
