package client

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/guest/agent"
)

// ListVMs returns every VM.
func (c *Client) ListVMs(ctx context.Context) ([]api.VM, error) {
	var v []api.VM
	err := c.w.Call(ctx, http.MethodGet, "/v1/vms", nil, &v)
	return v, err
}

// GetVM returns one VM.
func (c *Client) GetVM(ctx context.Context, name string) (api.VM, error) {
	var v api.VM
	err := c.w.Call(ctx, http.MethodGet, "/v1/vms/"+url.PathEscape(name), nil, &v)
	return v, err
}

// CreateVM creates (and unless NoStart, boots) a VM, reporting progress.
func (c *Client) CreateVM(ctx context.Context, req api.CreateVM, progress func(api.Event)) (api.VM, error) {
	var v api.VM
	err := c.w.Stream(ctx, http.MethodPost, "/v1/vms", req, progress, &v)
	return v, err
}

// VMAction runs start, stop, restart or kill.
func (c *Client) VMAction(ctx context.Context, name, action string, progress func(api.Event)) (api.VM, error) {
	var v api.VM
	err := c.w.Stream(ctx, http.MethodPost, "/v1/vms/"+url.PathEscape(name)+"/"+action, nil, progress, &v)
	return v, err
}

// DeleteVM deletes a VM.
func (c *Client) DeleteVM(ctx context.Context, name string) error {
	return c.w.Call(ctx, http.MethodDelete, "/v1/vms/"+url.PathEscape(name), nil, nil)
}

// VMLogs copies a VM's console log to w; with follow it keeps copying until
// ctx ends.
func (c *Client) VMLogs(ctx context.Context, name string, lines int, follow bool, w io.Writer) error {
	q := url.Values{}
	if lines > 0 {
		q.Set("lines", fmt.Sprint(lines))
	}
	if follow {
		q.Set("follow", "1")
	}
	body, err := c.w.Raw(ctx, http.MethodGet, "/v1/vms/"+url.PathEscape(name)+"/logs?"+q.Encode())
	if err != nil {
		return err
	}
	defer body.Close()
	_, err = io.Copy(w, body)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Agent returns a client of a running VM's agent, tunnelled through the
// daemon: every agent connection is an upgraded request to bangerd.
func (c *Client) Agent(name string) *agent.Client {
	return agent.NewClient(agent.ClientConfig{Dial: func(ctx context.Context) (net.Conn, error) {
		return c.agentTunnel(ctx, name)
	}})
}

func (c *Client) agentTunnel(ctx context.Context, name string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.w.Socket)
	if err != nil {
		return nil, c.w.DialError(err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://banger/v1/vms/"+url.PathEscape(name)+"/agent", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", api.AgentUpgrade)
	c.w.SetHeaders(req)
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("agent tunnel: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		return nil, c.w.DecodeError(resp)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), api.AgentUpgrade) {
		conn.Close()
		return nil, fmt.Errorf("agent tunnel: unexpected upgrade %q", resp.Header.Get("Upgrade"))
	}
	conn.SetDeadline(time.Time{})
	return &bufConn{Conn: conn, r: br}, nil
}

// bufConn reads first what the response reader already buffered.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// CloseWrite half-closes the tunnel so the far side sees EOF.
func (b *bufConn) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SetVM changes a VM.
func (c *Client) SetVM(ctx context.Context, name string, req api.SetVM) (api.VM, error) {
	var v api.VM
	err := c.w.Call(ctx, http.MethodPost, "/v1/vms/"+url.PathEscape(name)+"/set", req, &v)
	return v, err
}

// VMPorts lists what listens in a running guest.
func (c *Client) VMPorts(ctx context.Context, name string) ([]api.Port, error) {
	var p []api.Port
	err := c.w.Call(ctx, http.MethodGet, "/v1/vms/"+url.PathEscape(name)+"/ports", nil, &p)
	return p, err
}

// VMStats reports a VM's resource use.
func (c *Client) VMStats(ctx context.Context, name string) (api.VMStats, error) {
	var s api.VMStats
	err := c.w.Call(ctx, http.MethodGet, "/v1/vms/"+url.PathEscape(name)+"/stats", nil, &s)
	return s, err
}

// PruneVMs deletes every VM that is not running.
func (c *Client) PruneVMs(ctx context.Context) ([]string, error) {
	var n api.Names
	err := c.w.Call(ctx, http.MethodPost, "/v1/vms/prune", nil, &n)
	return n.Names, err
}

// AddForwards adds port forwards ("[hostaddr:]hostport:guestport") to a VM.
func (c *Client) AddForwards(ctx context.Context, name string, specs []string) (api.VM, error) {
	var v api.VM
	err := c.w.Call(ctx, http.MethodPost, "/v1/vms/"+url.PathEscape(name)+"/forwards", map[string][]string{"forwards": specs}, &v)
	return v, err
}
