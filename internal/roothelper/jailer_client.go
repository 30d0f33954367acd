package roothelper

import (
	"context"
	"net/http"
)

// LaunchJailer stages a VM's jail and starts Firecracker's jailer in it.
func (c *Client) LaunchJailer(ctx context.Context, req JailerLaunchRequest) (JailerLaunch, error) {
	var out JailerLaunch
	err := c.Call(ctx, http.MethodPost, RouteJailerLaunch, req, &out)
	return out, err
}

// CleanupJail removes a VM's jail (nothing when there is none).
func (c *Client) CleanupJail(ctx context.Context, id string) error {
	return c.Call(ctx, http.MethodPost, RouteJailerCleanup, JailerCleanupRequest{ID: id}, nil)
}
