// Package dns serves the .vm zone: bangerd answers "<name>.vm" with the
// address of the running VM of that name, read live through Config.Lookup
// (nothing is stored, so a record exists exactly while its VM runs, and a
// restarted daemon answers as soon as it knows its VMs again), and forwards
// every other name to the upstream resolvers for the guests and the host,
// never for anyone else.
package dns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// DefaultForwardTimeout bounds one forwarded query when
// Config.ForwardTimeout is zero.
const DefaultForwardTimeout = 2 * time.Second

// Config is what a Server needs.
type Config struct {
	// Listen are the addresses served over both UDP and TCP, e.g.
	// 127.0.0.1:42069 and the bridge address with the same port. Port 0
	// picks a free port, the same for UDP and TCP (see Server.Addrs).
	// Addresses need not exist yet (the sockets are bound with
	// IP_FREEBIND), so the bridge address can be served before the bridge
	// is created.
	Listen []netip.AddrPort
	// Lookup returns the address of the running VM called name (the label
	// without ".vm", lower case). It is called for every query.
	Lookup func(name string) (netip.Addr, bool)
	// Upstreams answer names outside .vm; empty means the host's
	// resolvers, read from /etc/resolv.conf at each forward (see
	// SystemUpstreams).
	Upstreams []netip.AddrPort
	// AllowForward says whether a query from this source address may be
	// forwarded upstream; others are refused, so the server is never an
	// open resolver. Nil allows loopback only; AllowFrom(subnet) adds the
	// guests. .vm answers are given to anyone who can reach the server.
	AllowForward func(netip.Addr) bool
	// ForwardTimeout bounds one forwarded query; 0 is
	// DefaultForwardTimeout.
	ForwardTimeout time.Duration
	Log            *slog.Logger
}

// AllowFrom allows loopback sources and sources inside any of subnets,
// e.g. AllowFrom(cfg.Network.Subnet()).
func AllowFrom(subnets ...netip.Prefix) func(netip.Addr) bool {
	return func(a netip.Addr) bool {
		a = a.Unmap()
		if a.IsLoopback() {
			return true
		}
		for _, p := range subnets {
			if p.Masked().Contains(a) {
				return true
			}
		}
		return false
	}
}

// Server answers DNS queries on the configured addresses.
type Server struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	started bool
	closed  bool
	servers []*mdns.Server
	addrs   []netip.AddrPort
	cancel  context.CancelFunc // ends the contexts of queries in flight
	failed  chan error         // a listener that stopped by itself
	done    chan struct{}      // closed once every listener has stopped
}

// New checks cfg and returns a Server that is not listening yet.
func New(cfg Config) (*Server, error) {
	if len(cfg.Listen) == 0 {
		return nil, errors.New("dns server: no listen address")
	}
	for _, a := range cfg.Listen {
		if !a.IsValid() || a.Addr().Zone() != "" {
			return nil, fmt.Errorf("dns server: listen address %q: must be IP:port", a)
		}
	}
	if cfg.Lookup == nil {
		return nil, errors.New("dns server: Lookup is nil")
	}
	for _, u := range cfg.Upstreams {
		if !u.IsValid() || u.Port() == 0 || u.Addr().IsUnspecified() {
			return nil, fmt.Errorf("dns server: upstream %q: must be a resolver's IP:port", u)
		}
	}
	if cfg.AllowForward == nil {
		cfg.AllowForward = AllowFrom()
	}
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = DefaultForwardTimeout
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Server{cfg: cfg, log: log}, nil
}

// Serve is Start, then waits until ctx is done (or a listener fails) and
// closes the server. It returns nil after a normal shutdown.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-s.failed:
	}
	return errors.Join(err, s.Close())
}

// Start binds every listen address, UDP and TCP, before it returns, then
// serves them in goroutines until ctx is done or Close is called. Either
// every address is bound or none is.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return errors.New("dns server: already started or closed")
	}
	var pcs []net.PacketConn
	var lns []net.Listener
	var addrs []netip.AddrPort
	closeAll := func() {
		for _, pc := range pcs {
			pc.Close()
		}
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, a := range s.cfg.Listen {
		pc, ln, bound, err := bindPair(ctx, a)
		if err != nil {
			closeAll()
			return fmt.Errorf("serve dns on %s: %w", a, err)
		}
		pcs, lns, addrs = append(pcs, pc), append(lns, ln), append(addrs, bound)
	}

	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	handler := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) { s.handle(hctx, w, r) })
	var servers []*mdns.Server
	for i := range pcs {
		servers = append(servers,
			&mdns.Server{PacketConn: pcs[i], Handler: handler},
			&mdns.Server{Listener: lns[i], Handler: handler})
	}
	s.failed = make(chan error, len(servers))
	s.done = make(chan struct{})
	var wg sync.WaitGroup
	ready := make([]chan error, len(servers))
	for i, srv := range servers {
		// Each server reports once: started, or failed before starting.
		ready[i] = make(chan error, 1)
		var once sync.Once
		report := func(err error) { once.Do(func() { ready[i] <- err }) }
		srv.NotifyStartedFunc = func() { report(nil) }
		wg.Go(func() {
			if err := srv.ActivateAndServe(); err != nil {
				err = fmt.Errorf("serve dns on %s: %w", srvAddr(srv), err)
				report(err)
				s.failed <- err
			}
		})
	}
	go func() { wg.Wait(); close(s.done) }()
	var errs []error
	for _, r := range ready {
		errs = append(errs, <-r)
	}
	if err := errors.Join(errs...); err != nil {
		s.closed = true
		return errors.Join(err, stop(servers, cancel, s.done))
	}
	s.started, s.servers, s.addrs, s.cancel = true, servers, addrs, cancel
	go func() {
		select {
		case <-ctx.Done():
			s.Close()
		case <-s.done:
		}
	}()
	s.log.Info("dns serving", "addrs", fmt.Sprint(addrs), "zone", zone)
	return nil
}

// Addrs are the bound addresses, in the order of Config.Listen, with the
// ports that were picked for port 0; nil before Start.
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]netip.AddrPort(nil), s.addrs...)
}

// Close stops every listener, ends queries in flight and waits for them.
// It is safe to call more than once, concurrently, and before Start; every
// call returns once the server has stopped.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.started {
		s.closed = true
		s.mu.Unlock()
		return nil
	}
	if s.closed {
		done := s.done
		s.mu.Unlock()
		<-done
		return nil
	}
	s.closed = true
	servers, cancel, done := s.servers, s.cancel, s.done
	s.mu.Unlock()
	return stop(servers, cancel, done)
}

// stop shuts the servers down, ends the queries in flight (cancel) and
// waits until every server goroutine has returned (done).
func stop(servers []*mdns.Server, cancel context.CancelFunc, done <-chan struct{}) error {
	cancel()
	ctx, stopTimer := context.WithTimeout(context.Background(), 5*time.Second)
	defer stopTimer()
	var errs []error
	for _, srv := range servers {
		if err := srv.ShutdownContext(ctx); err != nil && !isNotStarted(err) {
			errs = append(errs, fmt.Errorf("stop dns on %s: %w", srvAddr(srv), err))
		}
		// A listener that failed before it started is still open.
		if srv.PacketConn != nil {
			srv.PacketConn.Close()
		} else {
			srv.Listener.Close()
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, errors.New("stop dns: queries still running after 5s"))
	}
	return errors.Join(errs...)
}

func isNotStarted(err error) bool {
	var e *mdns.Error
	return errors.As(err, &e) && e.Error() == "dns: server not started"
}

func srvAddr(srv *mdns.Server) string {
	if srv.PacketConn != nil {
		return "udp " + srv.PacketConn.LocalAddr().String()
	}
	return "tcp " + srv.Listener.Addr().String()
}

// bindPair binds UDP and TCP on a. With port 0 the UDP port is picked by
// the kernel and TCP takes the same one, retrying when it is taken.
func bindPair(ctx context.Context, a netip.AddrPort) (net.PacketConn, net.Listener, netip.AddrPort, error) {
	lc := net.ListenConfig{Control: freeBind}
	var err error
	for range 10 {
		var pc net.PacketConn
		pc, err = lc.ListenPacket(ctx, "udp", a.String())
		if err != nil {
			return nil, nil, netip.AddrPort{}, fmt.Errorf("udp: %w", err)
		}
		bound := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		bound = netip.AddrPortFrom(a.Addr(), bound.Port())
		var ln net.Listener
		ln, err = lc.Listen(ctx, "tcp", bound.String())
		if err == nil {
			return pc, ln, bound, nil
		}
		pc.Close()
		if a.Port() != 0 || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, nil, netip.AddrPort{}, fmt.Errorf("tcp: %w", err)
}

// freeBind lets a socket bind an address the host does not have (yet):
// the bridge address before the bridge exists. It needs no privilege.
func freeBind(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if network == "udp6" || network == "tcp6" {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
	})
	return errors.Join(err, serr)
}
