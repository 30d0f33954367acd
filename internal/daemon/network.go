package daemon

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/dns"
	"github.com/banger/banger/internal/roothelper"
)

// startDNS serves the .vm zone on the configured loopback address (for the
// host) and on the bridge address (for guests: the root helper redirects
// their port 53 there), and asks systemd-resolved, where it runs, to route
// ~vm to it. It returns a function that stops the server.
func (d *Daemon) startDNS(ctx context.Context) (func(), error) {
	n := d.cfg.Network
	srv, err := dns.New(dns.Config{
		Listen:       []netip.AddrPort{n.DNSAddr, netip.AddrPortFrom(n.CIDR.Addr(), n.DNSAddr.Port())},
		Lookup:       d.vms.Lookup,
		Upstreams:    n.UpstreamDNS,
		AllowForward: dns.AllowFrom(n.Subnet()),
		Log:          d.log.With("component", "dns"),
	})
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return nil, api.WithHint(fmt.Errorf("serve .vm DNS on %s: %w", n.DNSAddr, err), "set network.dns_addr to a free loopback port")
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	hc := d.helperClient()
	if _, err := hc.RedirectDNS(hctx, n.DNSAddr.Port()); err != nil {
		d.log.Warn("guests will not resolve .vm names: the root helper could not redirect their DNS", "err", err)
	}
	return func() { srv.Close() }, nil
}

// syncResolver asks the helper to route ~vm through systemd-resolved to the
// daemon; it needs the bridge, so it runs after the bridge is made.
func (d *Daemon) syncResolver(ctx context.Context) {
	st, err := d.helperClient().SyncResolver(ctx, d.cfg.Network.Bridge, d.cfg.Network.DNSAddr)
	switch {
	case err != nil:
		d.log.Warn("route ~vm through systemd-resolved", "err", err)
	case !st.Applied:
		d.log.Debug("host DNS routing not applied", "reason", st.Reason)
	}
}

// sshRoutes answer what `banger vm ssh` and `banger ssh-config` need.
func (d *Daemon) sshRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/ssh", handler(func(r *http.Request) (api.SSHPaths, error) {
		if _, err := d.ssh.AuthorizedKey(r.Context()); err != nil {
			return api.SSHPaths{}, err
		}
		return d.ssh.Paths(), nil
	}))
	mux.Handle("GET /v1/vms/{name}/ssh", handler(func(r *http.Request) (api.SSHInfo, error) {
		info, err := d.vms.SSHInfo(r.PathValue("name"))
		if err != nil {
			return info, err
		}
		info.KeyPath, info.KnownHosts = d.ssh.KeyPath(), d.ssh.KnownHostsPath()
		return info, nil
	}))
}

// helperClient is the root helper's typed client.
func (d *Daemon) helperClient() *roothelper.Client { return &roothelper.Client{Client: d.helper} }
