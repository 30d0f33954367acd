package roothelper

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/command"
)

// On hosts with systemd-resolved, the .vm zone is routed to bangerd as a
// per-link setting of the bridge: its DNS server is the daemon's address,
// its only domain the routing domain ~vm, and it is never the default
// route, so every other name still resolves as before. resolved forgets
// these settings when the link goes away; the daemon syncs again after
// creating the bridge. Elsewhere the user routes .vm by hand
// (docs/dns-routing.md).

// Routes of the resolver routing.
const (
	RouteResolverSync  = "/v1/resolver/sync"
	RouteResolverClear = "/v1/resolver/clear"
)

// ResolverSyncRequest routes the .vm zone on Bridge to DNSAddr.
type ResolverSyncRequest struct {
	Bridge  string         `json:"bridge"`
	DNSAddr netip.AddrPort `json:"dns_addr"`
}

// ResolverClearRequest undoes ResolverSyncRequest on Bridge.
type ResolverClearRequest struct {
	Bridge string `json:"bridge"`
}

// ResolverStatus says whether resolved's settings were changed, and why
// not when they were not (resolved is not running, ...): that is not an
// error, the host just needs manual routing.
type ResolverStatus struct {
	Applied bool   `json:"applied"`
	Reason  string `json:"reason,omitempty"`
}

func (r ResolverSyncRequest) logAttrs() []any {
	return []any{"bridge", r.Bridge, "dns_addr", r.DNSAddr.String()}
}
func (r ResolverClearRequest) logAttrs() []any { return []any{"bridge", r.Bridge} }

// SyncResolver points systemd-resolved's .vm routing at the daemon.
func (s *Server) SyncResolver(ctx context.Context, req ResolverSyncRequest) (ResolverStatus, error) {
	if err := s.validateResolverBridge(req.Bridge); err != nil {
		return ResolverStatus{}, err
	}
	if err := validateResolverAddr(s.cfg.CIDR, req.DNSAddr); err != nil {
		return ResolverStatus{}, err
	}
	if st, skip := s.resolverSkipped(); skip {
		return st, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := resolvectl{}.sync(ctx, req.Bridge, req.DNSAddr)
	if err == nil && st.Applied {
		s.log.Info("resolver routing", "bridge", req.Bridge, "dns_addr", req.DNSAddr.String(), "domain", "~vm")
	}
	return st, err
}

// ClearResolver removes the bridge's resolved settings.
func (s *Server) ClearResolver(ctx context.Context, req ResolverClearRequest) (ResolverStatus, error) {
	if err := s.validateResolverBridge(req.Bridge); err != nil {
		return ResolverStatus{}, err
	}
	if st, skip := s.resolverSkipped(); skip {
		return st, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return resolvectl{}.clear(ctx, req.Bridge)
}

// resolverSkipped: resolved's settings belong to the host's namespace, so
// a helper acting in another namespace (tests, e2e) never touches them.
func (s *Server) resolverSkipped() (ResolverStatus, bool) {
	if s.cfg.NetNS != "" {
		return ResolverStatus{Reason: "the helper acts in " + s.ns.String() + "; resolver routing is host-wide"}, true
	}
	return ResolverStatus{}, false
}

func (s *Server) validateResolverBridge(name string) error {
	if name == s.cfg.Bridge {
		return nil
	}
	if err := ValidateBridge(name); err != nil {
		return err
	}
	return api.Errorf(api.CodeBadRequest, "bridge %q is not the configured bridge %q", name, s.cfg.Bridge)
}

// validateResolverAddr admits the daemon's possible addresses only: a
// loopback address or the bridge's own, with a port.
func validateResolverAddr(cidr netip.Prefix, a netip.AddrPort) error {
	ip := a.Addr()
	switch {
	case !a.IsValid():
		return api.Errorf(api.CodeBadRequest, "dns address is missing")
	case a.Port() == 0:
		return api.Errorf(api.CodeBadRequest, "dns address %s: needs a port", a)
	case ip.Zone() != "" || ip.Is4In6():
		return api.Errorf(api.CodeBadRequest, "dns address %s: must be a plain IPv4 or IPv6 address", a)
	case !ip.IsLoopback() && ip != cidr.Addr():
		return api.Errorf(api.CodeBadRequest, "dns address %s: must be a loopback address or the bridge address %s", a, cidr.Addr())
	}
	return nil
}

// clearResolverRouting is Cleanup's part: revert the configured bridge's
// resolved settings, when there is anything to revert.
func clearResolverRouting(ctx context.Context, cfg Config) error {
	if cfg.Bridge == "" || cfg.NetNS != "" {
		return nil
	}
	st, err := resolvectl{}.clear(ctx, cfg.Bridge)
	if err != nil {
		return err
	}
	if st.Applied {
		cfg.logger().Info("reverted resolver routing", "bridge", cfg.Bridge)
	}
	return nil
}

// resolvectl drives resolved's per-link settings through its command-line
// tool. The zero value is the host's; tests fill the fields.
type resolvectl struct {
	bin     string                 // "" = resolvectl from PATH
	runDir  string                 // "" = /run/systemd/resolve
	hasLink func(name string) bool // nil = the host namespace has a link of that name
}

// running is host.ResolvedRunning's test: the stub's resolv.conf or the
// varlink socket in resolved's runtime directory.
func (r resolvectl) running() bool {
	dir := r.runDir
	if dir == "" {
		dir = "/run/systemd/resolve"
	}
	if fi, err := os.Stat(filepath.Join(dir, "stub-resolv.conf")); err == nil && fi.Mode().IsRegular() {
		return true
	}
	fi, err := os.Stat(filepath.Join(dir, "io.systemd.Resolve"))
	return err == nil && fi.Mode()&os.ModeSocket != 0
}

func (r resolvectl) linkExists(name string) bool {
	if r.hasLink != nil {
		return r.hasLink(name)
	}
	_, err := net.InterfaceByName(name)
	return err == nil
}

func (r resolvectl) argv(args ...string) []string {
	bin := r.bin
	if bin == "" {
		bin = "resolvectl"
	}
	return append([]string{bin}, args...)
}

const notRunning = "systemd-resolved is not running; route .vm by hand (docs/dns-routing.md)"

// syncArgv are the commands that route .vm on bridge to addr.
func (r resolvectl) syncArgv(bridge string, addr netip.AddrPort) [][]string {
	return [][]string{
		r.argv("dns", bridge, addr.String()),
		r.argv("domain", bridge, "~vm"),
		r.argv("default-route", bridge, "false"),
	}
}

func (r resolvectl) sync(ctx context.Context, bridge string, addr netip.AddrPort) (ResolverStatus, error) {
	if !r.running() {
		return ResolverStatus{Reason: notRunning}, nil
	}
	if !r.linkExists(bridge) {
		return ResolverStatus{}, api.Errorf(api.CodeNotFound, "bridge %q does not exist; create it before routing .vm to it", bridge)
	}
	for _, argv := range r.syncArgv(bridge, addr) {
		if err := command.Run(ctx, argv...); err != nil {
			return ResolverStatus{}, fmt.Errorf("route .vm on %s to %s: %w", bridge, addr, err)
		}
	}
	return ResolverStatus{Applied: true}, nil
}

func (r resolvectl) clear(ctx context.Context, bridge string) (ResolverStatus, error) {
	if !r.running() {
		return ResolverStatus{Reason: notRunning}, nil
	}
	if !r.linkExists(bridge) {
		return ResolverStatus{Reason: "bridge " + bridge + " does not exist; resolved dropped its settings with it"}, nil
	}
	if err := command.Run(ctx, r.argv("revert", bridge)...); err != nil {
		return ResolverStatus{}, fmt.Errorf("clear .vm routing on %s: %w", bridge, err)
	}
	return ResolverStatus{Applied: true}, nil
}
