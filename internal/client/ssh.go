package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/banger/banger/internal/api"
)

// SSHInfo returns what the system ssh client needs to reach a VM.
func (c *Client) SSHInfo(ctx context.Context, name string) (api.SSHInfo, error) {
	var s api.SSHInfo
	err := c.w.Call(ctx, http.MethodGet, "/v1/vms/"+url.PathEscape(name)+"/ssh", nil, &s)
	return s, err
}

// SSHPaths returns banger's ssh key and known_hosts paths.
func (c *Client) SSHPaths(ctx context.Context) (api.SSHPaths, error) {
	var p api.SSHPaths
	err := c.w.Call(ctx, http.MethodGet, "/v1/ssh", nil, &p)
	return p, err
}
