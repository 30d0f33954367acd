package wire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/buildinfo"
)

// Client calls a wire Server over its unix socket.
type Client struct {
	Socket string
	// Name is how errors refer to the server ("bangerd").
	Name string
	// DownHint is what to tell the user when nothing answers on Socket.
	DownHint string
	Version  buildinfo.Info

	once   sync.Once
	http   *http.Client
	mu     sync.Mutex
	server buildinfo.Info
}

func (c *Client) init() {
	c.once.Do(func() {
		c.http = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", c.Socket)
			},
			DisableCompression: true,
		}}
	})
}

// ServerVersion is the version the server reported on the last response.
func (c *Client) ServerVersion() (buildinfo.Info, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.server, c.server.Version != ""
}

func (c *Client) newRequest(ctx context.Context, method, path string, in any) (*http.Request, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://banger"+path, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(api.HeaderVersion, c.Version.Version)
	req.Header.Set(api.HeaderAPIVersion, strconv.Itoa(c.Version.APIVersion))
	return req, nil
}

func (c *Client) do(req *http.Request) (*http.Response, error) {
	c.init()
	resp, err := c.http.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, c.DialError(err)
	}
	if v := resp.Header.Get(api.HeaderVersion); v != "" {
		n, _ := strconv.Atoi(resp.Header.Get(api.HeaderAPIVersion))
		c.mu.Lock()
		c.server = buildinfo.Info{Version: v, APIVersion: n}
		c.mu.Unlock()
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	var e api.Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(b, &e); err != nil || e.Code == "" {
		return &api.Error{Code: api.CodeOperationFault, Message: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))}
	}
	return &e
}

// Call sends in as JSON and decodes the JSON answer into out (either may be nil).
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	req, err := c.newRequest(ctx, method, path, in)
	if err != nil {
		return err
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	if resp.Header.Get("Content-Type") == api.ContentTypeStream {
		return readStream(resp.Body, nil, out)
	}
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s answer: %w", c.Name, err)
	}
	return nil
}

// Stream is Call for long operations: every progress event goes to
// onEvent, the final result is decoded into out.
func (c *Client) Stream(ctx context.Context, method, path string, in any, onEvent func(api.Event), out any) error {
	req, err := c.newRequest(ctx, method, path, in)
	if err != nil {
		return err
	}
	return c.stream(req, onEvent, out)
}

// Upload sends body as a raw request body (a file the daemon could not
// read itself) and reads a JSON answer or an event stream into out.
func (c *Client) Upload(ctx context.Context, method, path string, body io.Reader, onEvent func(api.Event), out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://banger"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	c.SetHeaders(req)
	return c.stream(req, onEvent, out)
}

func (c *Client) stream(req *http.Request, onEvent func(api.Event), out any) error {
	req.Header.Set("Accept", api.ContentTypeStream)
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	if resp.Header.Get("Content-Type") != api.ContentTypeStream {
		if out == nil {
			return nil
		}
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return readStream(resp.Body, onEvent, out)
}

func readStream(r io.Reader, onEvent func(api.Event), out any) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var ev api.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("bad event from server: %w", err)
		}
		switch ev.Type {
		case api.EventResult:
			if out != nil && len(ev.Result) > 0 {
				return json.Unmarshal(ev.Result, out)
			}
			return nil
		case api.EventError:
			if ev.Error == nil {
				return api.Errorf(api.CodeOperationFault, "operation failed")
			}
			return ev.Error
		default:
			if onEvent != nil {
				onEvent(ev)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	return errors.New("the server closed the event stream before the operation finished (see its log)")
}

// Raw performs a request and returns the body of a successful answer as a
// stream (for logs); errors are decoded as usual.
func (c *Client) Raw(ctx context.Context, method, path string) (io.ReadCloser, error) {
	req, err := c.newRequest(ctx, method, path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp.Body, nil
}

// SetHeaders adds the version handshake headers to a request built by hand
// (upgraded connections).
func (c *Client) SetHeaders(req *http.Request) {
	req.Header.Set(api.HeaderVersion, c.Version.Version)
	req.Header.Set(api.HeaderAPIVersion, strconv.Itoa(c.Version.APIVersion))
}

// DecodeError turns an error response into an *api.Error.
func (c *Client) DecodeError(resp *http.Response) error { return decodeError(resp) }

// DialError explains a failed dial of the server's socket.
func (c *Client) DialError(err error) error {
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return &api.Error{Code: api.CodeUnavailable,
			Message: fmt.Sprintf("%s is not running (no answer on %s)", c.Name, c.Socket), Hint: c.DownHint}
	}
	if errors.Is(err, syscall.EACCES) {
		return &api.Error{Code: api.CodeUnauthorized, Message: fmt.Sprintf("permission denied on %s", c.Socket),
			Hint: "run banger as the user the daemons were installed for (see banger system status)"}
	}
	return fmt.Errorf("call %s: %w", c.Name, err)
}
