// Package agent is banger's in-guest control agent and its host-side client.
//
// The agent runs as root in every VM and speaks HTTP/1.1 over a host-only
// channel: vsock (one connection per host dial, Firecracker) or a
// virtio-serial port multiplexed with yamux after a resync handshake (QEMU,
// see serial.go). Routes:
//
//	GET  /v1/health            Health
//	POST /v1/exec              ExecRequest, then Upgrade: banger-exec/1 (exec.go)
//	PUT  /v1/files?path=DIR    tar body extracted under DIR -> CopyResult
//	GET  /v1/files?path=PATH   tar stream of PATH
//	GET  /v1/ports             []Port
//	POST /v1/shutdown          ShutdownRequest -> 202, then poweroff/reboot
//
// Errors travel as {"error": "...", "code": "..."} with banger's api codes.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Config says where the agent finds things. Every path is configurable so
// tests run on the host without a VM; zero values are the in-guest defaults.
type Config struct {
	Logger  *slog.Logger
	Version string

	// SerialPath is the virtio-serial port Run serves on ("" disables it).
	SerialPath string
	// VsockPort is the AF_VSOCK port Run listens on (0 disables it).
	VsockPort uint32

	// Root prefixes every path of the file routes ("" means /).
	Root string
	// Proc is where procfs is mounted (default /proc).
	Proc string
	// Home is HOME and the default working directory of exec (default /root).
	Home string
	// Systemctl is the systemctl binary (default: "systemctl" found in PATH;
	// missing means systemd is not managing this guest).
	Systemctl string
	// PowerOff replaces the real sync+poweroff/reboot (tests).
	PowerOff func(ctx context.Context, reboot bool) error
}

// Agent serves the control API.
type Agent struct {
	log       *slog.Logger
	version   string
	root      string
	proc      string
	home      string
	systemctl string
	powerOff  func(ctx context.Context, reboot bool) error
	serial    string
	vsockPort uint32
	handler   http.Handler
}

// New builds an agent from cfg.
func New(cfg Config) *Agent {
	a := &Agent{
		log:       cfg.Logger,
		version:   cfg.Version,
		root:      cfg.Root,
		proc:      cfg.Proc,
		home:      cfg.Home,
		systemctl: cfg.Systemctl,
		powerOff:  cfg.PowerOff,
		serial:    cfg.SerialPath,
		vsockPort: cfg.VsockPort,
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.root == "" {
		a.root = "/"
	}
	if a.proc == "" {
		a.proc = "/proc"
	}
	if a.home == "" {
		a.home = "/root"
	}
	if a.systemctl == "" {
		a.systemctl = "systemctl"
	}
	if a.powerOff == nil {
		a.powerOff = a.realPowerOff
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", a.handleHealth)
	mux.HandleFunc("POST /v1/exec", a.handleExec)
	mux.HandleFunc("PUT /v1/files", a.handlePutFiles)
	mux.HandleFunc("GET /v1/files", a.handleGetFiles)
	mux.HandleFunc("GET /v1/ports", a.handlePorts)
	mux.HandleFunc("POST /v1/shutdown", a.handleShutdown)
	a.handler = mux
	return a
}

// Handler is the agent's HTTP API, for serving on any listener.
func (a *Agent) Handler() http.Handler { return a.handler }

// Run serves on the configured serial port and vsock port until ctx ends.
// Either may appear late (udev, module loading), so both are retried
// rather than required at start.
func (a *Agent) Run(ctx context.Context) error {
	if a.serial == "" && a.vsockPort == 0 {
		return errors.New("agent: neither a serial port nor a vsock port is configured")
	}
	var wg sync.WaitGroup
	if a.serial != "" {
		wg.Go(func() { a.ServeSerial(ctx, OpenSerialPort(a.serial)) })
	}
	if a.vsockPort != 0 {
		wg.Go(func() { a.serveVsock(ctx) })
	}
	wg.Wait()
	return ctx.Err()
}

func (a *Agent) serveVsock(ctx context.Context) {
	logged := false
	for ctx.Err() == nil {
		ln, err := ListenVsock(a.vsockPort)
		if err != nil {
			if !logged {
				a.log.Info("vsock not available yet, retrying", "port", a.vsockPort, "err", err)
				logged = true
			}
			sleep(ctx, 2*time.Second)
			continue
		}
		logged = false
		a.log.Info("serving on vsock", "port", a.vsockPort)
		if err := a.Serve(ctx, ln); err != nil && ctx.Err() == nil {
			a.log.Warn("vsock listener stopped", "err", err)
			sleep(ctx, time.Second)
		}
	}
}

// Serve answers HTTP on ln until ctx ends or ln fails.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	err := srv.Serve(ln)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// guestPath maps an absolute guest path under the configured root.
func (a *Agent) guestPath(p string) (string, error) {
	if p == "" || !filepath.IsAbs(p) {
		return "", &Error{Code: CodeBadRequest, Message: fmt.Sprintf("path %q must be absolute", p)}
	}
	return filepath.Join(a.root, filepath.Clean(p)), nil
}

// Error codes, the same strings as banger's api codes.
const (
	CodeBadRequest      = "bad_request"
	CodeNotFound        = "not_found"
	CodeOperationFailed = "operation_failed"
)

// Error is the agent's error body: {"error": "...", "code": "..."}.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"error"`
}

// Sentinels for errors.Is; any *Error with the same code matches.
var (
	ErrBadRequest      = &Error{Code: CodeBadRequest}
	ErrNotFound        = &Error{Code: CodeNotFound}
	ErrOperationFailed = &Error{Code: CodeOperationFailed}
)

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code
	}
	return e.Message
}

// Is matches any *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

func badRequest(format string, args ...any) error {
	return &Error{Code: CodeBadRequest, Message: fmt.Sprintf(format, args...)}
}

func httpStatus(code string) int {
	switch code {
	case CodeBadRequest:
		return http.StatusBadRequest
	case CodeNotFound:
		return http.StatusNotFound
	default:
		return http.StatusInternalServerError
	}
}

func (a *Agent) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: CodeOperationFailed, Message: err.Error()}
		if errors.Is(err, os.ErrNotExist) {
			e.Code = CodeNotFound
		}
	} else {
		e = &Error{Code: e.Code, Message: err.Error()}
	}
	a.log.Info("request failed", "method", r.Method, "path", r.URL.Path, "code", e.Code, "err", e.Message)
	writeJSON(w, httpStatus(e.Code), e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// maxJSONBody bounds request bodies that are decoded into memory.
const maxJSONBody = 1 << 20

func decodeJSON(r *http.Request, v any) error {
	// Unknown fields are accepted: a newer daemon may talk to the agent of
	// a VM started before an upgrade.
	if err := json.NewDecoder(io.LimitReader(r.Body, maxJSONBody)).Decode(v); err != nil {
		return badRequest("decode request: %v", err)
	}
	return nil
}
