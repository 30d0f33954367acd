package firecracker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Client speaks Firecracker's HTTP API on its unix socket: JSON bodies,
// 204 for a change that took, and {"fault_message": "..."} for one that
// did not. It covers what banger uses of the API description
// (swagger 2.0, v1.16.1): every request it sends is also valid for
// Firecracker 1.0 and later, except where a method says otherwise.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client of the API socket at socket. Nothing is
// dialled until the first call; each call uses its own connection, so a
// restarted Firecracker needs no new client.
func NewClient(socket string) *Client {
	return &Client{
		socket: socket,
		http: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
			DisableKeepAlives:  true,
			DisableCompression: true,
		}},
	}
}

// APIError is Firecracker's refusal of a request.
type APIError struct {
	Method, Path string
	Status       int
	// Fault is Firecracker's fault_message (or the body, if it had none).
	Fault string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("firecracker refused %s %s (%d): %s", e.Method, e.Path, e.Status, e.Fault)
}

// MachineConfig is the body of PUT /machine-config.
type MachineConfig struct {
	VCPUCount  int `json:"vcpu_count"`
	MemSizeMiB int `json:"mem_size_mib"`
	// TrackDirtyPages enables diff snapshots.
	TrackDirtyPages bool `json:"track_dirty_pages,omitempty"`
}

// BootSource is the body of PUT /boot-source. Every released x86_64
// Firecracker (up to 1.16.1) loads only an ELF vmlinux.
type BootSource struct {
	KernelImagePath string `json:"kernel_image_path"`
	InitrdPath      string `json:"initrd_path,omitempty"`
	BootArgs        string `json:"boot_args,omitempty"`
}

// Cache types of a drive.
const (
	// CacheUnsafe ignores the guest's flush requests (Firecracker's default).
	CacheUnsafe = "Unsafe"
	// CacheWriteback honours them: what a guest's sync needs.
	CacheWriteback = "Writeback"
)

// Drive is the body of PUT /drives/{drive_id}: a raw file as a virtio
// block device. Drives appear in the guest as vda, vdb, ... in the order
// they are put (a root device would go first; banger has none).
type Drive struct {
	DriveID      string `json:"drive_id"`
	PathOnHost   string `json:"path_on_host"`
	IsRootDevice bool   `json:"is_root_device"`
	IsReadOnly   bool   `json:"is_read_only"`
	CacheType    string `json:"cache_type,omitempty"`
}

// NetworkInterface is the body of PUT /network-interfaces/{iface_id}.
type NetworkInterface struct {
	IfaceID     string `json:"iface_id"`
	HostDevName string `json:"host_dev_name"`
	GuestMAC    string `json:"guest_mac,omitempty"`
}

// Vsock is the body of PUT /vsock. Firecracker binds UDSPath and, for each
// connection on it, forwards "CONNECT <port>\n" to that guest port.
type Vsock struct {
	GuestCID uint32 `json:"guest_cid"`
	UDSPath  string `json:"uds_path"`
}

// Log levels of the logger.
const (
	LevelError   = "Error"
	LevelWarning = "Warning"
	LevelInfo    = "Info"
	LevelDebug   = "Debug"
)

// Logger is the body of PUT /logger.
type Logger struct {
	LogPath       string `json:"log_path"`
	Level         string `json:"level,omitempty"`
	ShowLevel     bool   `json:"show_level,omitempty"`
	ShowLogOrigin bool   `json:"show_log_origin,omitempty"`
}

// Metrics is the body of PUT /metrics.
type Metrics struct {
	MetricsPath string `json:"metrics_path"`
}

// Actions of PUT /actions.
const (
	ActionInstanceStart  = "InstanceStart"
	ActionSendCtrlAltDel = "SendCtrlAltDel"
	ActionFlushMetrics   = "FlushMetrics"
)

// InstanceInfo is the answer of GET /.
type InstanceInfo struct {
	AppName string `json:"app_name"`
	ID      string `json:"id"`
	// State is "Not started", "Running" or "Paused".
	State      string `json:"state"`
	VMMVersion string `json:"vmm_version"`
}

// Instance states.
const (
	StateNotStarted = "Not started"
	StateRunning    = "Running"
	StatePaused     = "Paused"
)

// SnapshotCreate is the body of PUT /snapshot/create; the VM must be paused.
type SnapshotCreate struct {
	SnapshotPath string `json:"snapshot_path"`
	MemFilePath  string `json:"mem_file_path"`
	// SnapshotType is "Full" (the default) or "Diff".
	SnapshotType string `json:"snapshot_type,omitempty"`
}

// MemoryBackend says where a snapshot's guest memory comes from.
type MemoryBackend struct {
	// BackendType is "File" or "Uffd".
	BackendType string `json:"backend_type"`
	BackendPath string `json:"backend_path"`
}

// NetworkOverride gives a restored interface another tap.
type NetworkOverride struct {
	IfaceID     string `json:"iface_id"`
	HostDevName string `json:"host_dev_name"`
}

// SnapshotLoad is the body of PUT /snapshot/load, accepted only by a fresh
// Firecracker (nothing configured but the logger and metrics). MemBackend
// needs Firecracker 1.1, NetworkOverrides a recent one (1.14 and later
// describe it).
type SnapshotLoad struct {
	SnapshotPath     string            `json:"snapshot_path"`
	MemBackend       *MemoryBackend    `json:"mem_backend,omitempty"`
	TrackDirtyPages  bool              `json:"track_dirty_pages,omitempty"`
	ResumeVM         bool              `json:"resume_vm,omitempty"`
	NetworkOverrides []NetworkOverride `json:"network_overrides,omitempty"`
}

// PutMachineConfig sets vCPUs and memory. Pre-boot only.
func (c *Client) PutMachineConfig(ctx context.Context, m MachineConfig) error {
	return c.call(ctx, http.MethodPut, "/machine-config", m, nil)
}

// PutBootSource sets the kernel, initrd and kernel command line. Pre-boot only.
func (c *Client) PutBootSource(ctx context.Context, b BootSource) error {
	return c.call(ctx, http.MethodPut, "/boot-source", b, nil)
}

// PutDrive adds (or replaces) a drive. Pre-boot only.
func (c *Client) PutDrive(ctx context.Context, d Drive) error {
	return c.call(ctx, http.MethodPut, "/drives/"+d.DriveID, d, nil)
}

// PutNetworkInterface adds a network interface on a host tap. Pre-boot only.
func (c *Client) PutNetworkInterface(ctx context.Context, n NetworkInterface) error {
	return c.call(ctx, http.MethodPut, "/network-interfaces/"+n.IfaceID, n, nil)
}

// PutVsock adds the vsock device. Pre-boot only.
func (c *Client) PutVsock(ctx context.Context, v Vsock) error {
	return c.call(ctx, http.MethodPut, "/vsock", v, nil)
}

// PutLogger sends Firecracker's own log to a file.
func (c *Client) PutLogger(ctx context.Context, l Logger) error {
	return c.call(ctx, http.MethodPut, "/logger", l, nil)
}

// PutMetrics sends Firecracker's metrics to a file; once per process.
func (c *Client) PutMetrics(ctx context.Context, m Metrics) error {
	return c.call(ctx, http.MethodPut, "/metrics", m, nil)
}

// Action runs one of the Action* actions.
func (c *Client) Action(ctx context.Context, action string) error {
	return c.call(ctx, http.MethodPut, "/actions", struct {
		ActionType string `json:"action_type"`
	}{action}, nil)
}

// InstanceStart boots the guest.
func (c *Client) InstanceStart(ctx context.Context) error {
	return c.Action(ctx, ActionInstanceStart)
}

// SendCtrlAltDel presses Ctrl+Alt+Del on the guest's keyboard: Linux
// guests reboot, which (with reboot=k) ends Firecracker.
func (c *Client) SendCtrlAltDel(ctx context.Context) error {
	return c.Action(ctx, ActionSendCtrlAltDel)
}

// InstanceInfo describes the instance.
func (c *Client) InstanceInfo(ctx context.Context) (InstanceInfo, error) {
	var i InstanceInfo
	err := c.call(ctx, http.MethodGet, "/", nil, &i)
	return i, err
}

// Version is Firecracker's version, "1.16.1".
func (c *Client) Version(ctx context.Context) (string, error) {
	var v struct {
		FirecrackerVersion string `json:"firecracker_version"`
	}
	if err := c.call(ctx, http.MethodGet, "/version", nil, &v); err != nil {
		return "", err
	}
	return strings.TrimPrefix(v.FirecrackerVersion, "v"), nil
}

// Pause stops the guest's vCPUs. Post-boot only.
func (c *Client) Pause(ctx context.Context) error { return c.vmState(ctx, "Paused") }

// Resume restarts the guest's vCPUs.
func (c *Client) Resume(ctx context.Context) error { return c.vmState(ctx, "Resumed") }

func (c *Client) vmState(ctx context.Context, state string) error {
	return c.call(ctx, http.MethodPatch, "/vm", struct {
		State string `json:"state"`
	}{state}, nil)
}

// CreateSnapshot writes the paused VM's state and memory to files.
func (c *Client) CreateSnapshot(ctx context.Context, s SnapshotCreate) error {
	return c.call(ctx, http.MethodPut, "/snapshot/create", s, nil)
}

// LoadSnapshot restores a VM into a fresh Firecracker.
func (c *Client) LoadSnapshot(ctx context.Context, s SnapshotLoad) error {
	return c.call(ctx, http.MethodPut, "/snapshot/load", s, nil)
}

// maxBody bounds what is read of an answer.
const maxBody = 1 << 20

// call sends one request; out, if not nil, receives a 200's body.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("firecracker %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, body)
	if err != nil {
		return fmt.Errorf("firecracker %s %s: %w", method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("firecracker %s %s: %w", method, path, ctx.Err())
		}
		return fmt.Errorf("firecracker %s %s via %s: %w", method, path, c.socket, unwrapURL(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("firecracker %s %s: read answer: %w", method, path, err)
	}
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return nil
	case resp.StatusCode == http.StatusOK:
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("firecracker %s %s: decode answer: %w", method, path, err)
		}
		return nil
	}
	var fault struct {
		FaultMessage string `json:"fault_message"`
	}
	msg := strings.TrimSpace(string(data))
	if json.Unmarshal(data, &fault) == nil && fault.FaultMessage != "" {
		msg = fault.FaultMessage
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &APIError{Method: method, Path: path, Status: resp.StatusCode, Fault: oneLine(msg)}
}

// unwrapURL drops net/http's `Put "http://localhost/x":` prefix: the
// socket path says more.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// oneLine keeps a fault message on one line for the user.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
