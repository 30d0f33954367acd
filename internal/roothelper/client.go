package roothelper

import (
	"context"
	"net/http"
	"net/netip"

	"github.com/banger/banger/internal/buildinfo"
	"github.com/banger/banger/internal/wire"
)

// Client is the owner daemon's typed client of the helper.
type Client struct{ *wire.Client }

// NewClient returns a client of the helper listening on socket
// (paths.Layout.HelperSocket()).
func NewClient(socket string) *Client {
	return &Client{&wire.Client{
		Socket:   socket,
		Name:     "bangerd-root",
		DownHint: "start the root helper: sudo systemctl start bangerd-root (or sudo banger system install)",
		Version:  buildinfo.Get(),
	}}
}

// EnsureBridge creates or repairs the configured bridge.
func (c *Client) EnsureBridge(ctx context.Context, name string) (BridgeStatus, error) {
	var out BridgeStatus
	err := c.Call(ctx, http.MethodPost, RouteBridgeEnsure, BridgeRequest{Name: name}, &out)
	return out, err
}

// DeleteBridge removes a banger bridge.
func (c *Client) DeleteBridge(ctx context.Context, name string) error {
	return c.Call(ctx, http.MethodPost, RouteBridgeDelete, BridgeRequest{Name: name}, nil)
}

// CreateTap creates (or reuses) a tap owned by the owner on the bridge.
func (c *Client) CreateTap(ctx context.Context, name string) (TapStatus, error) {
	var out TapStatus
	err := c.Call(ctx, http.MethodPost, RouteTapCreate, TapRequest{Name: name}, &out)
	return out, err
}

// DeleteTap removes a tap.
func (c *Client) DeleteTap(ctx context.Context, name string) error {
	return c.Call(ctx, http.MethodPost, RouteTapDelete, TapRequest{Name: name}, nil)
}

// AddNAT gives the guest on tap outbound access.
func (c *Client) AddNAT(ctx context.Context, tap string, guest netip.Addr) (NATStatus, error) {
	var out NATStatus
	err := c.Call(ctx, http.MethodPost, RouteNATAdd, NATRequest{Tap: tap, GuestIP: guest}, &out)
	return out, err
}

// RemoveNAT takes that access away again.
func (c *Client) RemoveNAT(ctx context.Context, tap string, guest netip.Addr) error {
	return c.Call(ctx, http.MethodPost, RouteNATRemove, NATRequest{Tap: tap, GuestIP: guest}, nil)
}

// Status reports what the helper has in place.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	err := c.Call(ctx, http.MethodGet, RouteStatus, nil, &out)
	return out, err
}
