// Package client is the Go client of bangerd, used by the CLI and the e2e
// tests. It adds typed methods on top of the wire transport.
package client

import (
	"context"
	"net/http"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/buildinfo"
	"github.com/banger/banger/internal/wire"
)

// DownHint tells the user how to get a daemon when none answers.
const DownHint = `install and start banger: sudo banger system install --owner "$USER" (or, without systemd: sudo banger system run)`

// Client talks to one bangerd socket.
type Client struct {
	w *wire.Client
}

// New returns a client for the daemon listening on socket.
func New(socket string) *Client {
	return &Client{w: &wire.Client{Socket: socket, Name: "bangerd", DownHint: DownHint, Version: buildinfo.Get()}}
}

// Socket is the path this client dials.
func (c *Client) Socket() string { return c.w.Socket }

// DaemonVersion is the version the daemon reported on the last call.
func (c *Client) DaemonVersion() (buildinfo.Info, bool) { return c.w.ServerVersion() }

// Version asks the daemon for its build information.
func (c *Client) Version(ctx context.Context) (api.VersionInfo, error) {
	var v api.VersionInfo
	err := c.w.Call(ctx, http.MethodGet, "/v1/version", nil, &v)
	return v, err
}

// Status reports the daemon's and the root helper's health.
func (c *Client) Status(ctx context.Context) (api.DaemonStatus, error) {
	var s api.DaemonStatus
	err := c.w.Call(ctx, http.MethodGet, "/v1/status", nil, &s)
	return s, err
}

// Names lists live names of a kind ("vm", "image", "kernel").
func (c *Client) Names(ctx context.Context, kind string) ([]string, error) {
	var n api.Names
	err := c.w.Call(ctx, http.MethodGet, "/v1/names/"+kind, nil, &n)
	return n.Names, err
}
