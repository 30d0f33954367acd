// Package roothelper is the logic of bangerd-root: the closed set of host
// operations that need root (bridge, taps, NAT), the validation of every
// argument they take, and the socket they are offered on, which only root
// and the owner user may use. It runs no shell and touches no path outside
// banger's directories.
package roothelper

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/buildinfo"
	"github.com/banger/banger/internal/wire"
)

// Server carries out the helper's operations and serves them.
type Server struct {
	cfg Config
	log *slog.Logger
	ns  netNS
	// mu serialises operations: each is a read-modify-write of kernel
	// state (look, then create) that must not interleave with another.
	mu sync.Mutex
}

// New checks cfg and returns a Server; Close releases it.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("root helper config: %w", err)
	}
	ns, err := openNetNS(cfg.NetNS)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, log: cfg.logger(), ns: ns}, nil
}

// Close releases the namespace handle, if any.
func (s *Server) Close() error { return s.ns.close() }

// Listen prepares the helper's socket: HelperDir root-owned 0711, the
// socket 0600 and owned by the owner, so that only root and the owner can
// connect at all (SO_PEERCRED is checked on top of that).
func Listen(cfg Config) (net.Listener, error) {
	if err := wire.EnsureDir(cfg.Layout.HelperDir, 0o711, 0, 0); err != nil {
		return nil, fmt.Errorf("helper dir %s: %w", cfg.Layout.HelperDir, err)
	}
	return wire.Listen(cfg.Layout.HelperSocket(), 0o600, cfg.OwnerUID, cfg.OwnerGID)
}

// Serve answers on ln until ctx is done.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	srv := &wire.Server{Handler: s.Handler(), Authorize: s.Authorize, Log: s.log, Version: buildinfo.Get()}
	return srv.Serve(ctx, ln, grace)
}

// Authorize admits root and the owner, matched by uid.
func (s *Server) Authorize(p wire.Peer) error {
	return wire.AllowUIDs(0, uint32(s.cfg.OwnerUID))(p)
}

// Handler is the route table. It does no peer check itself: serve it
// through wire.Server with Authorize, as Serve does.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+RouteBridgeEnsure, route(s, "bridge.ensure", func(ctx context.Context, r BridgeRequest) (BridgeStatus, error) {
		return s.EnsureBridge(ctx, r.Name)
	}))
	mux.Handle("POST "+RouteBridgeDelete, route(s, "bridge.delete", func(ctx context.Context, r BridgeRequest) (Empty, error) {
		return Empty{}, s.DeleteBridge(ctx, r.Name)
	}))
	mux.Handle("POST "+RouteTapCreate, route(s, "tap.create", func(ctx context.Context, r TapRequest) (TapStatus, error) {
		return s.CreateTap(ctx, r.Name)
	}))
	mux.Handle("POST "+RouteTapDelete, route(s, "tap.delete", func(ctx context.Context, r TapRequest) (Empty, error) {
		return Empty{}, s.DeleteTap(ctx, r.Name)
	}))
	mux.Handle("POST "+RouteNATAdd, route(s, "nat.add", s.AddNAT))
	mux.Handle("POST "+RouteNATRemove, route(s, "nat.remove", func(ctx context.Context, r NATRequest) (Empty, error) {
		return Empty{}, s.RemoveNAT(ctx, r)
	}))
	mux.Handle("POST "+RouteDNSRedirect, route(s, "dns.redirect", s.RedirectDNS))
	mux.Handle("POST "+RouteDNSUnredirect, route(s, "dns.unredirect", func(ctx context.Context, _ dnsUnredirectRequest) (Empty, error) {
		return Empty{}, s.UnredirectDNS(ctx)
	}))
	mux.Handle("POST "+RouteResolverSync, route(s, "resolver.sync", s.SyncResolver))
	mux.Handle("POST "+RouteResolverClear, route(s, "resolver.clear", s.ClearResolver))
	mux.Handle("POST "+RouteJailerLaunch, route(s, "jailer.launch", s.LaunchJailer))
	mux.Handle("POST "+RouteJailerCleanup, route(s, "jailer.cleanup", func(ctx context.Context, r JailerCleanupRequest) (Empty, error) {
		return Empty{}, s.CleanupJail(ctx, r.ID)
	}))
	mux.Handle("POST "+RouteImageBuild, s.imageBuildHandler())
	mux.Handle("GET "+RouteStatus, route(s, "status", func(ctx context.Context, _ statusRequest) (Status, error) {
		return s.Status(ctx)
	}))
	// Also catches a known path with the wrong method, so every refusal
	// has a typed error.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.logOp(r.Context(), "unknown", []any{"method", r.Method, "path", r.URL.Path}, api.ErrUnknownMethod, 0)
		wire.WriteError(w, api.Errorf(api.CodeUnknownMethod, "the root helper has no %s %s", r.Method, r.URL.Path), wire.OpID(r.Context()))
	})
	return mux
}

type request interface{ logAttrs() []any }

// route decodes the body strictly, runs op, logs one line and answers.
func route[Req request, Resp any](s *Server, op string, fn func(context.Context, Req) (Resp, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var req Req
		var resp Resp
		err := wire.DecodeJSON(r, &req)
		if err == nil {
			resp, err = fn(r.Context(), req)
		}
		s.logOp(r.Context(), op, req.logAttrs(), err, time.Since(start))
		if err != nil {
			wire.WriteError(w, err, wire.OpID(r.Context()))
			return
		}
		wire.WriteJSON(w, http.StatusOK, resp)
	})
}

func (s *Server) logOp(ctx context.Context, op string, args []any, err error, took time.Duration) {
	uid := int64(-1)
	if p, ok := wire.PeerFrom(ctx); ok {
		uid = int64(p.UID)
	}
	attrs := append([]any{"op_id", wire.OpID(ctx), "uid", uid}, args...)
	attrs = append(attrs, "took", took.Round(time.Microsecond))
	if err != nil {
		s.log.Warn(op, append(attrs, "err", err.Error())...)
		return
	}
	s.log.Info(op, attrs...)
}
