// Package daemon is bangerd, the owner daemon: it owns banger's state and
// all the logic, serves the CLI on a unix socket, and asks the root helper
// for the few operations that need privilege. Handlers stay thin; the work
// lives in the packages they call.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/buildinfo"
	"github.com/banger/banger/internal/config"
	"github.com/banger/banger/internal/host"
	"github.com/banger/banger/internal/paths"
	"github.com/banger/banger/internal/portfwd"
	"github.com/banger/banger/internal/roothelper"
	"github.com/banger/banger/internal/sandbox"
	"github.com/banger/banger/internal/sshkeys"
	"github.com/banger/banger/internal/state"
	"github.com/banger/banger/internal/wire"
)

// Options wire one daemon.
type Options struct {
	Layout paths.Layout
	// Home is the owner's home: ~/ in file_sync entries expands against it.
	Home   string
	Config *config.Config
	Log    *slog.Logger
}

// Daemon is the running owner daemon.
type Daemon struct {
	layout  paths.Layout
	cfg     *config.Config
	log     *slog.Logger
	store   *state.Store
	helper  *wire.Client
	started time.Time
	vms     *sandbox.Manager
	choice  host.Choice
	art     artefactServices
	ssh     *sshkeys.Store
}

// New opens the state and prepares the daemon; Run serves it.
func New(o Options) (*Daemon, error) {
	uid, gid := os.Getuid(), os.Getgid()
	if err := wire.EnsureDir(o.Layout.RuntimeDir, 0o700, uid, gid); err != nil {
		return nil, fmt.Errorf("prepare runtime dir: %w", err)
	}
	if err := wire.EnsureDir(o.Layout.StateDir, 0o700, uid, gid); err != nil {
		return nil, fmt.Errorf("prepare state dir: %w", err)
	}
	st, err := state.Open(o.Layout.RecordsDir())
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		layout: o.Layout,
		cfg:    o.Config,
		log:    o.Log,
		store:  st,
		helper: &wire.Client{
			Socket:   o.Layout.HelperSocket(),
			Name:     "bangerd-root",
			DownHint: "start the root helper: sudo banger system restart (or sudo banger system run)",
			Version:  buildinfo.Get(),
		},
		started: time.Now(),
	}
	backend, choice, err := chooseBackend(context.Background(), o.Config, d)
	if err != nil {
		d.log.Warn("no hypervisor: VMs cannot start", "err", err)
		backend = unavailableBackend{err: err}
	} else {
		d.log.Info("hypervisor", "backend", choice.Backend, "accel", choice.Accel, "why", choice.Reason)
	}
	d.choice = choice
	keyPath := ""
	if _, set := o.Config.Origins["ssh_key_path"]; set {
		keyPath = o.Config.SSHKeyPath
	}
	d.ssh = sshkeys.NewStore(sshkeys.StoreConfig{Dir: o.Layout.SSHDir(), KeyPath: keyPath})
	d.vms = sandbox.New(sandbox.Config{
		Layout: o.Layout, Config: o.Config, Store: st,
		Images: vmImages{d}, Kernels: vmKernels{d},
		Net:     &hostNet{c: roothelper.NewClient(o.Layout.HelperSocket()), bridge: o.Config.Network.Bridge, bridgeUp: d.syncResolver},
		Backend: backend, Accel: choice.Accel, HypervisorReason: choice.Reason, Log: o.Log,
		Forwards: forwards{portfwd.NewManager(portfwd.Config{Log: o.Log.With("component", "portfwd")})},
		FileSync: fileSync{home: o.Home, entries: o.Config.FileSync},
		Guest:    d.ssh,
	})
	return d, nil
}

// Run serves the CLI socket until ctx is cancelled, then shuts down
// gracefully. VMs keep running; a restarted daemon adopts them.
func (d *Daemon) Run(ctx context.Context) error {
	if err := d.vms.Reconcile(ctx); err != nil {
		d.log.Warn("reconcile VMs", "err", err)
	}
	stopDNS, err := d.startDNS(ctx)
	if err != nil {
		return err
	}
	defer stopDNS()
	ln, err := wire.Listen(d.layout.DaemonSocket(), 0o600, -1, -1)
	if err != nil {
		return err
	}
	srv := &wire.Server{
		Handler: d.routes(),
		// The owner and root may talk to the daemon; root is trusted anyway.
		Authorize: wire.AllowUIDs(uint32(os.Getuid()), 0),
		Log:       d.log,
		Version:   buildinfo.Get(),
	}
	d.log.Info("bangerd ready", "socket", d.layout.DaemonSocket(), "version", buildinfo.Get().String(), "pid", os.Getpid())
	err = srv.Serve(ctx, ln, 10*time.Second)
	d.log.Info("bangerd stopped")
	return err
}

// handler adapts a function returning (result, error) to an http handler.
func handler[T any](fn func(r *http.Request) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		if err != nil {
			wire.WriteError(w, err, wire.OpID(r.Context()))
			return
		}
		wire.WriteJSON(w, http.StatusOK, v)
	}
}

func (d *Daemon) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /v1/version", handler(d.version))
	mux.Handle("GET /v1/status", handler(d.status))
	mux.Handle("GET /v1/names/{kind}", handler(d.names))
	d.kernelRoutes(mux)
	d.imageRoutes(mux)
	d.vmRoutes(mux)
	d.sshRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		wire.WriteError(w, api.Errorf(api.CodeUnknownMethod, "no route %s %s", r.Method, r.URL.Path), wire.OpID(r.Context()))
	})
	return mux
}

func versionInfo() api.VersionInfo {
	i := buildinfo.Get()
	return api.VersionInfo{Version: i.Version, Commit: i.Commit, Date: i.Date, APIVersion: i.APIVersion}
}

func (d *Daemon) version(*http.Request) (api.VersionInfo, error) { return versionInfo(), nil }

func (d *Daemon) status(r *http.Request) (api.DaemonStatus, error) {
	st := api.DaemonStatus{
		Version: versionInfo(), PID: os.Getpid(), UID: os.Getuid(), StartedAt: d.started,
		Socket: d.layout.DaemonSocket(), StateDir: d.layout.StateDir,
		Helper: api.HelperStatus{Socket: d.layout.HelperSocket()},
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	var raw []byte
	var body = (*rawJSON)(&raw)
	if err := d.helper.Call(ctx, http.MethodGet, "/v1/status", nil, body); err != nil {
		st.Helper.Error = err.Error()
	} else {
		st.Helper.Reachable = true
		st.Helper.Network = raw
		if v, ok := d.helper.ServerVersion(); ok {
			st.Helper.Version = v.Version
		}
	}
	return st, nil
}

type rawJSON []byte

func (r *rawJSON) UnmarshalJSON(b []byte) error { *r = append((*r)[:0], b...); return nil }

func (d *Daemon) names(r *http.Request) (api.Names, error) {
	var names []string
	var err error
	switch kind := r.PathValue("kind"); kind {
	case "vm", "vms":
		names, err = d.vms.Names()
	case "image", "images", "kernel", "kernels":
		names, err = d.artefactNames(r.Context(), strings.TrimSuffix(kind, "s"))
	default:
		return api.Names{}, api.Errorf(api.CodeBadRequest, "unknown kind %q (want vm, image or kernel)", kind)
	}
	if names == nil {
		names = []string{}
	}
	return api.Names{Names: names}, err
}
