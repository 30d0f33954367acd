package roothelper

import (
	"context"
	"net/http"
	"net/netip"
)

// RedirectDNS sends guests' queries to the bridge address, port 53, to the
// daemon's port on that address.
func (c *Client) RedirectDNS(ctx context.Context, port uint16) (DNSRedirectStatus, error) {
	var out DNSRedirectStatus
	err := c.Call(ctx, http.MethodPost, RouteDNSRedirect, DNSRedirectRequest{Port: int(port)}, &out)
	return out, err
}

// UnredirectDNS removes that redirect.
func (c *Client) UnredirectDNS(ctx context.Context) error {
	return c.Call(ctx, http.MethodPost, RouteDNSUnredirect, nil, nil)
}

// SyncResolver routes the host's .vm queries to dnsAddr through
// systemd-resolved's settings of bridge; Applied is false, with the reason,
// when resolved does not run.
func (c *Client) SyncResolver(ctx context.Context, bridge string, dnsAddr netip.AddrPort) (ResolverStatus, error) {
	var out ResolverStatus
	err := c.Call(ctx, http.MethodPost, RouteResolverSync, ResolverSyncRequest{Bridge: bridge, DNSAddr: dnsAddr}, &out)
	return out, err
}

// ClearResolver undoes SyncResolver.
func (c *Client) ClearResolver(ctx context.Context, bridge string) (ResolverStatus, error) {
	var out ResolverStatus
	err := c.Call(ctx, http.MethodPost, RouteResolverClear, ResolverClearRequest{Bridge: bridge}, &out)
	return out, err
}
