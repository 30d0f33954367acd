package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/hashicorp/yamux"
)

// ClientConfig says how to reach one guest's agent.
type ClientConfig struct {
	// Dial opens a stream to the agent: with vsock one per HTTP connection
	// (DialFirecrackerVsock), with Serial the host end of the port.
	Dial func(ctx context.Context) (net.Conn, error)
	// Serial runs the resync handshake on Dial's connection and multiplexes
	// HTTP connections over it with yamux, reconnecting when it dies.
	Serial bool
	// HandshakeTimeout bounds waiting for the agent's answer to a serial
	// resync (default 3s).
	HandshakeTimeout time.Duration
	// KillGrace is how long Exec waits after TERM before KILL, and after
	// KILL before abandoning the stream, once its ctx is done (default 5s).
	KillGrace time.Duration
	Logger    *slog.Logger
}

// Client calls one guest's agent. It is safe for concurrent use.
type Client struct {
	dial             func(ctx context.Context) (net.Conn, error)
	serial           bool
	handshakeTimeout time.Duration
	killGrace        time.Duration
	log              *slog.Logger
	transport        *http.Transport
	http             *http.Client

	// lock serialises (re)connecting the serial session; a channel so that
	// waiting for it honours ctx.
	lock chan struct{}
	sess *yamux.Session
}

// NewClient builds a client; nothing is dialled until the first call.
func NewClient(cfg ClientConfig) *Client {
	c := &Client{
		dial:             cfg.Dial,
		serial:           cfg.Serial,
		handshakeTimeout: cfg.HandshakeTimeout,
		killGrace:        cfg.KillGrace,
		log:              cfg.Logger,
		lock:             make(chan struct{}, 1),
	}
	if c.handshakeTimeout <= 0 {
		c.handshakeTimeout = 3 * time.Second
	}
	if c.killGrace <= 0 {
		c.killGrace = 5 * time.Second
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.transport = &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return c.conn(ctx) },
		DisableCompression:  true,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	c.http = &http.Client{Transport: c.transport}
	return c
}

// NewSerialClient is a client for a virtio-serial port whose host end
// dialUnix reaches (QEMU's chardev socket). It connects once with ctx so
// that a missing agent shows up here; later calls reconnect as needed.
func NewSerialClient(ctx context.Context, dialUnix func(ctx context.Context) (net.Conn, error)) (*Client, error) {
	c := NewClient(ClientConfig{Dial: dialUnix, Serial: true})
	if _, err := c.session(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Close drops the serial session and idle connections.
func (c *Client) Close() error {
	c.transport.CloseIdleConnections()
	c.lock <- struct{}{}
	defer func() { <-c.lock }()
	if c.sess != nil {
		c.sess.Close()
		c.sess = nil
	}
	return nil
}

// Dial opens a fresh connection to the agent: a vsock connection, or a new
// stream of the serial session. The daemon splices these to the CLI, which
// then speaks the agent's protocol itself.
func (c *Client) Dial(ctx context.Context) (net.Conn, error) { return c.conn(ctx) }

func (c *Client) conn(ctx context.Context) (net.Conn, error) {
	if c.dial == nil {
		return nil, errors.New("agent client has no dial function")
	}
	if !c.serial {
		return c.dial(ctx)
	}
	for range 2 {
		sess, err := c.session(ctx)
		if err != nil {
			return nil, err
		}
		st, err := sess.Open()
		if err == nil {
			return st, nil
		}
		// The session died since it was checked: reconnect once.
		sess.Close()
	}
	return nil, errors.New("agent session keeps closing")
}

// session returns a live serial session, resyncing a new one if needed.
func (c *Client) session(ctx context.Context) (*yamux.Session, error) {
	select {
	case c.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-c.lock }()
	if c.sess != nil && !c.sess.IsClosed() {
		return c.sess, nil
	}
	if c.sess != nil {
		c.log.Info("agent session lost, reconnecting")
		c.sess = nil
		// Pooled connections were streams of the dead session.
		c.transport.CloseIdleConnections()
	}
	sess, err := dialSerial(ctx, c.dial, c.handshakeTimeout, c.log)
	if err != nil {
		return nil, err
	}
	c.sess = sess
	return sess, nil
}

func (c *Client) request(ctx context.Context, method, path string, query url.Values, body io.Reader) (*http.Request, error) {
	u := "http://agent" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	return http.NewRequestWithContext(ctx, method, u, body)
}

// do sends req and turns an error answer into *Error.
func (c *Client) do(req *http.Request, want int) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		// The method and URL add nothing the caller's prefix does not say.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	if resp.StatusCode != want {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e Error
	if err := json.Unmarshal(b, &e); err != nil || e.Code == "" {
		return &Error{Code: CodeOperationFailed, Message: fmt.Sprintf("agent answered HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))}
	}
	return &e
}

func (c *Client) callJSON(ctx context.Context, method, path string, in, out any, want int) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := c.request(ctx, method, path, nil, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.do(req, want)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode agent answer: %w", err)
	}
	return nil
}

// Health asks the agent how the guest is.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	if err := c.callJSON(ctx, http.MethodGet, "/v1/health", nil, &h, http.StatusOK); err != nil {
		return Health{}, fmt.Errorf("agent health: %w", err)
	}
	return h, nil
}

// WaitReady polls Health every interval until the agent answers or ctx ends.
func (c *Client) WaitReady(ctx context.Context, interval time.Duration) (Health, error) {
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	lastErr := errors.New("no attempt finished")
	for {
		attempt, cancel := context.WithTimeout(ctx, c.handshakeTimeout+5*time.Second)
		h, err := c.Health(attempt)
		cancel()
		switch {
		case err == nil && h.Ready:
			return h, nil
		case err == nil:
			lastErr = errors.New("agent answered but is not ready")
		case ctx.Err() == nil:
			lastErr = err
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return Health{}, fmt.Errorf("wait for agent: %w (last attempt: %v)", ctx.Err(), lastErr)
		case <-t.C:
		}
	}
}

// Ports lists the guest's listening sockets.
func (c *Client) Ports(ctx context.Context) ([]Port, error) {
	var ps []Port
	if err := c.callJSON(ctx, http.MethodGet, "/v1/ports", nil, &ps, http.StatusOK); err != nil {
		return nil, fmt.Errorf("agent ports: %w", err)
	}
	return ps, nil
}

// Shutdown asks the guest to power off (or reboot). It returns once the
// agent accepted; the VM goes away shortly after.
func (c *Client) Shutdown(ctx context.Context, reboot bool) error {
	if err := c.callJSON(ctx, http.MethodPost, "/v1/shutdown", ShutdownRequest{Reboot: reboot}, nil, http.StatusAccepted); err != nil {
		return fmt.Errorf("agent shutdown: %w", err)
	}
	return nil
}
