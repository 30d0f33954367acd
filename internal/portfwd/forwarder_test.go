package portfwd

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func up() (netip.Addr, bool)   { return loopback, true }
func down() (netip.Addr, bool) { return netip.Addr{}, false }

var cmpAddr = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

// guest serves handle on 127.0.0.1 and stands in for the VM. It returns
// the port.
func guest(t *testing.T, handle func(*net.TCPConn)) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// echo copies what it reads back, then half-closes when the client does.
func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

func start(t *testing.T, cfg Config, target Target, specs ...Spec) (*Forwarder, []Active) {
	t.Helper()
	f := New(cfg)
	t.Cleanup(func() { f.Close() })
	act, err := f.Start(t.Context(), target, specs)
	if err != nil {
		t.Fatal(err)
	}
	return f, act
}

func dial(t *testing.T, a Active) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", a.Bound.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

func anyPort(guestPort uint16) Spec {
	return Spec{Host: netip.AddrPortFrom(loopback, 0), GuestPort: guestPort}
}

func TestEchoHalfClose(t *testing.T) {
	_, act := start(t, Config{}, up, anyPort(guest(t, echo)))
	if act[0].Bound.Port() == 0 || act[0].Bound.Addr() != loopback {
		t.Fatalf("bound %v, want 127.0.0.1 with a port", act[0].Bound)
	}
	c := dial(t, act[0])
	want := make([]byte, 1<<20)
	rand.Read(want)
	go func() {
		c.Write(want)
		c.CloseWrite() // the echo server only answers EOF once it sees ours
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("echoed %d bytes, want the %d sent", len(got), len(want))
	}
}

// TestGuestHalfClose: the guest finishes writing first and still receives
// what the client sends afterwards.
func TestGuestHalfClose(t *testing.T) {
	received := make(chan string, 1)
	port := guest(t, func(c *net.TCPConn) {
		c.Write([]byte("banner"))
		c.CloseWrite()
		b, _ := io.ReadAll(c)
		received <- string(b)
	})
	_, act := start(t, Config{}, up, anyPort(port))
	c := dial(t, act[0])
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "banner" {
		t.Fatalf("read %q, %v; want banner then EOF", got, err)
	}
	if _, err := c.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	select {
	case s := <-received:
		if s != "after" {
			t.Fatalf("guest received %q, want after", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("guest never saw the client's data and EOF")
	}
}

func TestParallelConnections(t *testing.T) {
	_, act := start(t, Config{}, up, anyPort(guest(t, echo)))
	const n = 64
	errs := make(chan error, n)
	for i := range n {
		go func() {
			c, err := net.Dial("tcp", act[0].Bound.String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			want := make([]byte, 64<<10+i)
			rand.Read(want)
			go func() {
				c.Write(want)
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err == nil && !bytes.Equal(got, want) {
				err = fmt.Errorf("connection %d: echoed %d bytes, want %d", i, len(got), len(want))
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestCloseEndsConnections(t *testing.T) {
	guestDone := make(chan struct{})
	port := guest(t, func(c *net.TCPConn) {
		defer close(guestDone)
		io.Copy(c, c) // returns when the forwarder closes its side
	})
	f, act := start(t, Config{}, up, anyPort(port))
	c := dial(t, act[0])
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}

	closed := make(chan error, 1)
	go func() { closed <- f.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with a connection open")
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(buf); err == nil || errors.Is(err, syscall.ETIMEDOUT) || isTimeout(err) {
		t.Fatalf("client read after Close = %d, %v; want the connection closed", n, err)
	}
	select {
	case <-guestDone:
	case <-time.After(5 * time.Second):
		t.Fatal("guest side still open after Close")
	}
	if c, err := net.Dial("tcp", act[0].Bound.String()); err == nil {
		c.Close()
		t.Fatal("listener still accepting after Close")
	}
	if l := f.List(); len(l) != 0 {
		t.Errorf("List after Close = %v", l)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// freePort returns a port nothing listens on (for a moment).
func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func TestStartAllOrNothing(t *testing.T) {
	port := guest(t, echo)
	_, act := start(t, Config{}, up, anyPort(port))
	busy := act[0].Bound

	free := netip.AddrPortFrom(loopback, freePort(t))
	f := New(Config{})
	defer f.Close()
	_, err := f.Start(t.Context(), up, []Spec{{free, port}, {busy, port}})
	if err == nil {
		t.Fatal("Start on a busy port succeeded")
	}
	if want := fmt.Sprintf("host port %s is in use", busy); err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	var be *BindError
	if !errors.As(err, &be) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %#v is not a *BindError wrapping EADDRINUSE", err)
	}
	if l := f.List(); len(l) != 0 {
		t.Errorf("List after failed Start = %v", l)
	}
	// The first spec's listener was closed again.
	ln, err := net.Listen("tcp", free.String())
	if err != nil {
		t.Fatalf("port of the first spec still bound: %v", err)
	}
	ln.Close()
	// A failed Start leaves the Forwarder unstarted, so it can try again.
	if _, err := f.Start(t.Context(), up, []Spec{{free, port}}); err != nil {
		t.Fatalf("Start after a failed Start: %v", err)
	}
}

func TestGuestUnreachable(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		target Target
		port   uint16
	}{
		{name: "vm not running", target: down, port: 80},
		{name: "nothing listening", target: up, port: freePort(t)},
		{name: "dial hangs", target: up, port: 80, cfg: Config{
			DialTimeout: 100 * time.Millisecond,
			Dial: func(ctx context.Context, _ netip.AddrPort) (net.Conn, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, act := start(t, tt.cfg, tt.target, anyPort(tt.port))
			c := dial(t, act[0])
			begin := time.Now()
			c.SetDeadline(begin.Add(3 * time.Second))
			n, err := c.Read(make([]byte, 1))
			if err == nil || isTimeout(err) {
				t.Fatalf("read = %d, %v; want the connection closed", n, err)
			}
			if d := time.Since(begin); d > 2*time.Second {
				t.Errorf("closed after %v", d)
			}
		})
	}
}

// TestCloseDuringDial: Close does not wait for the dial timeout.
func TestCloseDuringDial(t *testing.T) {
	dialing := make(chan struct{})
	f, act := start(t, Config{
		DialTimeout: time.Hour,
		Dial: func(ctx context.Context, _ netip.AddrPort) (net.Conn, error) {
			close(dialing)
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}, up, anyPort(80))
	dial(t, act[0])
	<-dialing
	done := make(chan struct{})
	go func() {
		f.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a dial")
	}
}

func TestAddRemove(t *testing.T) {
	port := guest(t, echo)
	f, _ := start(t, Config{}, up)
	if _, err := f.Start(t.Context(), up, nil); err == nil {
		t.Error("second Start succeeded")
	}
	a, err := f.Add(t.Context(), anyPort(port))
	if err != nil {
		t.Fatal(err)
	}
	b, err := f.Add(t.Context(), anyPort(port+0))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Active{a, b}, f.List(), cmpAddr); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if _, err := f.Add(t.Context(), Spec{a.Bound, port}); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Add on a bound port: %v, want EADDRINUSE", err)
	}

	c := dial(t, a)
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove(Spec{a.Bound, port}); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read on a removed forward = %d, nil", n)
	}
	if diff := cmp.Diff([]Active{b}, f.List(), cmpAddr); diff != "" {
		t.Errorf("List after Remove (-want +got):\n%s", diff)
	}
	err = f.Remove(Spec{a.Bound, port})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove: %v, want ErrNotFound", err)
	}
	if want := fmt.Sprintf("forward %s:%d: no such forward", a.Bound, port); err == nil || err.Error() != want {
		t.Errorf("second Remove: %v, want %q", err, want)
	}
	// A spec asking for any port removes what it started.
	if err := f.Remove(anyPort(port)); err != nil {
		t.Fatalf("Remove by the requested spec: %v", err)
	}
	if l := f.List(); len(l) != 0 {
		t.Errorf("List = %v, want none", l)
	}
}

func TestIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	ln.Close()
	s, err := ParseSpec("[::1]:0:" + fmt.Sprint(guest(t, echo)))
	if err != nil {
		t.Fatal(err)
	}
	_, act := start(t, Config{}, up, s)
	if !act[0].Bound.Addr().Is6() {
		t.Fatalf("bound %v, want ::1", act[0].Bound)
	}
	c := dial(t, act[0])
	c.Write([]byte("six"))
	c.CloseWrite()
	if got, err := io.ReadAll(c); err != nil || string(got) != "six" {
		t.Fatalf("read %q, %v", got, err)
	}
}

func TestManager(t *testing.T) {
	port := guest(t, echo)
	m := NewManager(Config{})
	t.Cleanup(func() { m.CloseAll() })

	// Different VMs open concurrently.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			_, err := m.Open(t.Context(), fmt.Sprintf("vm%d", i), up, []Spec{anyPort(port)})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Open(t.Context(), "vm0", up, nil); err == nil || err.Error() != `forwards of vm "vm0": already open` {
		t.Errorf("second Open: %v", err)
	}
	l := m.List("vm3")
	if len(l) != 1 {
		t.Fatalf("List(vm3) = %v", l)
	}
	c := dial(t, l[0])
	c.Write([]byte("m"))
	c.CloseWrite()
	if got, err := io.ReadAll(c); err != nil || string(got) != "m" {
		t.Fatalf("read %q, %v", got, err)
	}

	a, err := m.Add(t.Context(), "vm3", anyPort(port))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Remove("vm3", Spec{a.Bound, port}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Add(t.Context(), "nope", anyPort(port)); !errors.Is(err, ErrNotOpen) {
		t.Errorf("Add to a VM not open: %v, want ErrNotOpen", err)
	}

	if err := m.Close("vm3"); err != nil {
		t.Fatal(err)
	}
	if err := m.Close("vm3"); err != nil {
		t.Errorf("Close of a closed VM: %v", err)
	}
	if l := m.List("vm3"); l != nil {
		t.Errorf("List after Close = %v", l)
	}
	if _, err := m.Open(t.Context(), "vm3", up, []Spec{{l[0].Bound, port}}); err != nil {
		t.Errorf("reopen on the same port: %v", err)
	}
}
