package portfwd

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
)

// DefaultDialTimeout bounds the dial to the guest for each connection.
const DefaultDialTimeout = 5 * time.Second

// ErrNotFound is returned by Remove for a forward that does not exist.
var ErrNotFound = errors.New("no such forward")

// Target reports the guest's address while the VM runs. It is asked on
// every connection, so a restarted VM is followed without a new Forwarder.
type Target func() (netip.Addr, bool)

// Config configures a Forwarder or a Manager.
type Config struct {
	// Log receives per-connection failures; nil discards them.
	Log *slog.Logger
	// DialTimeout bounds the dial to the guest; 0 means DefaultDialTimeout.
	DialTimeout time.Duration
	// Dial connects to the guest; nil dials TCP directly (the host reaches
	// guests over the bridge).
	Dial func(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
}

func (c Config) withDefaults() Config {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.Dial == nil {
		c.Dial = func(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr.String())
		}
	}
	return c
}

// Active is a forward that is listening.
type Active struct {
	Spec Spec `json:"spec"`
	// Bound is where it listens: Spec.Host with a port 0 filled in.
	Bound netip.AddrPort `json:"bound"`
}

// BindError reports a host address that could not be listened on.
type BindError struct {
	Addr netip.AddrPort
	Err  error
}

func (e *BindError) Error() string {
	switch {
	case errors.Is(e.Err, syscall.EADDRINUSE):
		return fmt.Sprintf("host port %s is in use", e.Addr)
	case errors.Is(e.Err, syscall.EACCES):
		return fmt.Sprintf("host port %s needs privileges; pick a port above 1023", e.Addr)
	case errors.Is(e.Err, syscall.EADDRNOTAVAIL):
		return fmt.Sprintf("host address %s is not an address of this host", e.Addr.Addr())
	}
	return fmt.Sprintf("listen on %s: %v", e.Addr, e.Err)
}

func (e *BindError) Unwrap() error { return e.Err }

// Forwarder carries the forwards of one VM. Its connections outlive the
// context of the call that started them; they end with Remove or Close.
type Forwarder struct {
	cfg Config

	mu      sync.Mutex
	target  Target
	started bool
	closed  bool
	fwds    []*forward
	wg      sync.WaitGroup // accept loops and connections of every forward
}

// forward is one listener and its live connections.
type forward struct {
	Active
	ln     net.Listener
	done   chan struct{} // closed when the forward is shut down
	wg     sync.WaitGroup
	conns  map[net.Conn]struct{} // guarded by Forwarder.mu
	closed bool                  // guarded by Forwarder.mu
}

// New returns a Forwarder with nothing listening.
func New(cfg Config) *Forwarder {
	return &Forwarder{cfg: cfg.withDefaults()}
}

// Start listens on every spec and then proxies each connection to the same
// port of target's address. Either all specs listen or none does.
func (f *Forwarder) Start(ctx context.Context, target Target, specs []Spec) ([]Active, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.closed:
		return nil, errors.New("forward: closed")
	case f.started:
		return nil, errors.New("forward: already started")
	}
	var fwds []*forward
	for _, s := range specs {
		fw, err := listen(ctx, s)
		if err != nil {
			for _, fw := range fwds {
				fw.ln.Close()
			}
			return nil, err
		}
		fwds = append(fwds, fw)
	}
	f.target, f.started = target, true
	out := make([]Active, 0, len(fwds))
	for _, fw := range fwds {
		f.serveLocked(fw)
		out = append(out, fw.Active)
	}
	return out, nil
}

// Add listens on one more spec of a started Forwarder.
func (f *Forwarder) Add(ctx context.Context, s Spec) (Active, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.closed:
		return Active{}, fmt.Errorf("forward %s: closed", s)
	case !f.started:
		return Active{}, fmt.Errorf("forward %s: not started", s)
	}
	fw, err := listen(ctx, s)
	if err != nil {
		return Active{}, err
	}
	f.serveLocked(fw)
	return fw.Active, nil
}

// Remove stops the forward listening at s.Host, or, when s asks for any
// port (0), every forward started from s; their connections are closed.
func (f *Forwarder) Remove(s Spec) error {
	f.mu.Lock()
	var gone []*forward
	kept := f.fwds[:0]
	for _, fw := range f.fwds {
		match := fw.Bound == s.Host
		if s.Host.Port() == 0 {
			match = fw.Spec.Host == s.Host
		}
		if match && fw.Spec.GuestPort == s.GuestPort {
			gone = append(gone, fw)
		} else {
			kept = append(kept, fw)
		}
	}
	clear(f.fwds[len(kept):])
	f.fwds = kept
	var errs []error
	for _, fw := range gone {
		errs = append(errs, f.shutdownLocked(fw))
	}
	f.mu.Unlock()
	if len(gone) == 0 {
		return fmt.Errorf("forward %s: %w", s, ErrNotFound)
	}
	for _, fw := range gone {
		fw.wg.Wait()
	}
	return errors.Join(errs...)
}

// List returns the forwards listening, in the order they were added.
func (f *Forwarder) List() []Active {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Active, 0, len(f.fwds))
	for _, fw := range f.fwds {
		out = append(out, fw.Active)
	}
	return out
}

// Close stops every listener, closes every live connection and waits for
// their goroutines. It may be called more than once.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	var errs []error
	for _, fw := range f.fwds {
		errs = append(errs, f.shutdownLocked(fw))
	}
	f.fwds = nil
	f.mu.Unlock()
	f.wg.Wait()
	return errors.Join(errs...)
}

func listen(ctx context.Context, s Spec) (*forward, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.Host.String())
	if err != nil {
		var sysErr *net.OpError
		if errors.As(err, &sysErr) {
			err = sysErr.Err
		}
		return nil, &BindError{Addr: s.Host, Err: err}
	}
	bound := ln.Addr().(*net.TCPAddr).AddrPort()
	bound = netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port())
	return &forward{
		Active: Active{Spec: s, Bound: bound},
		ln:     ln,
		done:   make(chan struct{}),
		conns:  map[net.Conn]struct{}{},
	}, nil
}

func (f *Forwarder) serveLocked(fw *forward) {
	f.fwds = append(f.fwds, fw)
	f.wg.Add(1)
	fw.wg.Add(1)
	go f.serve(fw)
}

// shutdownLocked closes fw's listener and connections; its goroutines
// notice and end.
func (f *Forwarder) shutdownLocked(fw *forward) error {
	fw.closed = true
	close(fw.done)
	err := fw.ln.Close()
	for c := range fw.conns {
		c.Close()
	}
	clear(fw.conns)
	if err != nil {
		return fmt.Errorf("forward %s: %w", fw.Spec, err)
	}
	return nil
}

// track registers c as a live connection of fw, or reports that fw is shut
// down. A tracked connection's goroutine is counted before it starts.
func (f *Forwarder) track(fw *forward, c net.Conn, spawn bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fw.closed {
		return false
	}
	fw.conns[c] = struct{}{}
	if spawn {
		f.wg.Add(1)
		fw.wg.Add(1)
	}
	return true
}

func (f *Forwarder) untrack(fw *forward, c net.Conn) {
	f.mu.Lock()
	delete(fw.conns, c)
	f.mu.Unlock()
	c.Close()
}

func (f *Forwarder) serve(fw *forward) {
	defer f.wg.Done()
	defer fw.wg.Done()
	var backoff time.Duration
	for {
		c, err := fw.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: wait rather than spin, as
			// net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			f.cfg.Log.Warn("forward accept", "forward", fw.Spec.String(), "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-fw.done:
				return
			}
		}
		backoff = 0
		if !f.track(fw, c, true) {
			c.Close()
			return
		}
		go f.proxy(fw, c)
	}
}

// proxy carries one client connection to the guest and back.
func (f *Forwarder) proxy(fw *forward, client net.Conn) {
	defer f.wg.Done()
	defer fw.wg.Done()
	defer f.untrack(fw, client)
	f.mu.Lock()
	target := f.target
	f.mu.Unlock()
	ip, ok := target()
	if !ok {
		f.cfg.Log.Debug("forward: guest not running", "forward", fw.Spec.String())
		return
	}
	addr := netip.AddrPortFrom(ip, fw.Spec.GuestPort)
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.DialTimeout)
	defer cancel()
	// Shutting the forward down abandons a dial in progress.
	go func() {
		select {
		case <-fw.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	guest, err := f.cfg.Dial(ctx, addr)
	cancel()
	if err != nil {
		f.cfg.Log.Debug("forward: dial guest", "forward", fw.Spec.String(), "guest", addr.String(), "err", err)
		return
	}
	if !f.track(fw, guest, false) {
		guest.Close()
		return
	}
	defer f.untrack(fw, guest)
	pipe(client, guest)
}

// pipe copies both ways until both directions end. An end of stream is
// passed on as a half-close so request/response protocols that shut down
// their write side still get their answer; an error tears both down.
func pipe(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		halfCopy(b, a)
	}()
	halfCopy(a, b)
	<-done
}

func halfCopy(dst, src net.Conn) {
	// io.Copy between TCP connections splices in the kernel; otherwise it
	// uses one 32 KiB buffer. Either way nothing queues up here.
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		src.Close()
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	dst.Close()
}
