package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// The virtio-serial transport is one byte stream that outlives the host
// process holding its other end: the daemon may restart and reconnect at
// any time, and bytes of a dead session may still sit in either direction.
// So every host connection starts with a resync:
//
//	host -> agent  "BANGER-AGENT-SYNC v1 <32 hex nonce>\n"
//	agent -> host  "BANGER-AGENT-ACK v1 <same nonce>\n"
//
// The agent discards everything before a well-formed preamble, the host
// everything before the ACK carrying its nonce; then both run a fresh yamux
// session (agent = server, host = client), one yamux stream per HTTP
// connection. The agent drops the session and looks for the next preamble
// when the port reads EOF (host gone) or when yamux sees bytes that are not
// yamux (a new host spoke before the agent noticed the old one leave).
const (
	syncMagic = "BANGER-AGENT-SYNC v1 "
	ackMagic  = "BANGER-AGENT-ACK v1 "
	nonceLen  = 32
)

const (
	// maxPortBuffer bounds what the agent reads ahead of its consumer.
	maxPortBuffer = 1 << 20
	// recentKeep is how much of what a session consumed is rescanned for a
	// preamble when that session dies: yamux reads ahead at most one 4 KiB
	// buffer plus a 12-byte header past the bytes it rejected.
	recentKeep = 16 << 10
)

// ServeSerial serves the API over a virtio-serial port until ctx ends.
// open is called again whenever the port reads EOF (the host side is
// disconnected: virtio-serial reads return 0 until it comes back) or fails,
// after a short sleep so a disconnected port is polled, not spun on.
func (a *Agent) ServeSerial(ctx context.Context, open func(context.Context) (io.ReadWriteCloser, error)) {
	const minWait, maxWait = 50 * time.Millisecond, 2 * time.Second
	wait := minWait
	var lastErr string
	for ctx.Err() == nil {
		rwc, err := open(ctx)
		if err != nil {
			if err.Error() != lastErr {
				a.log.Info("serial port not available, retrying", "err", err)
				lastErr = err.Error()
			}
			sleep(ctx, wait)
			wait = min(wait*2, maxWait)
			continue
		}
		lastErr = ""
		if a.servePort(ctx, rwc) {
			wait = minWait
		} else {
			// EOF right away: nobody on the host side yet.
			wait = min(wait*2, 250*time.Millisecond)
		}
		rwc.Close()
		sleep(ctx, wait)
	}
}

// servePort runs sessions on one opened port until it fails or ctx ends.
// It reports whether any session was established.
func (a *Agent) servePort(ctx context.Context, rwc io.ReadWriteCloser) bool {
	p := newPort(rwc)
	go p.pump()
	stop := context.AfterFunc(ctx, func() { rwc.Close(); p.wake() })
	defer stop()
	served := false
	for {
		nonce, err := p.awaitSync(ctx)
		if err != nil {
			if served && !errors.Is(err, io.EOF) && ctx.Err() == nil {
				a.log.Warn("serial port read failed", "err", err)
			}
			return served
		}
		served = true
		conn := p.attach()
		if _, err := conn.Write([]byte(ackMagic + nonce + "\n")); err != nil {
			a.log.Warn("serial handshake answer", "err", err)
			conn.Close()
			continue
		}
		sess, err := yamux.Server(conn, yamuxConfig(a.log))
		if err != nil {
			conn.Close()
			a.log.Error("serial session", "err", err)
			return served
		}
		a.log.Info("host connected over serial")
		done := make(chan struct{})
		go func() {
			defer close(done)
			a.Serve(ctx, sess)
		}()
		select {
		case <-sess.CloseChan():
		case <-p.dead:
			// Close the device first: a yamux write blocked on a
			// disconnected port would otherwise hold up sess.Close.
			rwc.Close()
		case <-ctx.Done():
		}
		sess.Close()
		<-done
		a.log.Info("serial session ended")
	}
}

// port is one opened serial device. A single goroutine reads it into buf,
// so a session that dies never takes bytes the next handshake needs.
type port struct {
	rwc  io.ReadWriteCloser
	dead chan struct{} // closed when the pump stops

	mu     sync.Mutex
	cond   sync.Cond
	buf    []byte // read from the device, not consumed yet
	err    error  // why the pump stopped
	gen    uint64 // the attached session; older sessionConns read EOF
	recent []byte // tail of what the attached session consumed
	closed bool

	wmu sync.Mutex // one writer at a time, and none from a detached session
}

func newPort(rwc io.ReadWriteCloser) *port {
	p := &port{rwc: rwc, dead: make(chan struct{})}
	p.cond.L = &p.mu
	return p
}

func (p *port) pump() {
	defer close(p.dead)
	b := make([]byte, 32<<10)
	for {
		n, err := p.rwc.Read(b)
		p.mu.Lock()
		p.buf = append(p.buf, b[:n]...)
		if err != nil {
			p.err = err
		}
		p.cond.Broadcast()
		for p.err == nil && !p.closed && len(p.buf) >= maxPortBuffer {
			p.cond.Wait()
		}
		stop := p.err != nil || p.closed
		p.mu.Unlock()
		if stop {
			return
		}
	}
}

func (p *port) wake() {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// awaitSync discards input up to a well-formed preamble and returns its nonce.
func (p *port) awaitSync(ctx context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	magic := []byte(syncMagic)
	for {
		if i := bytes.Index(p.buf, magic); i >= 0 {
			rest := p.buf[i+len(magic):]
			if len(rest) > nonceLen {
				nonce := rest[:nonceLen]
				if rest[nonceLen] == '\n' && isHex(nonce) {
					p.buf = rest[nonceLen+1:]
					p.cond.Broadcast()
					return string(nonce), nil
				}
				p.buf = rest // a damaged preamble: look past it
				continue
			}
			p.buf = p.buf[i:]
		} else if keep := len(magic) - 1; len(p.buf) > keep {
			p.buf = append([]byte(nil), p.buf[len(p.buf)-keep:]...)
		}
		p.cond.Broadcast()
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if p.err != nil {
			return "", p.err
		}
		if p.closed {
			return "", net.ErrClosed
		}
		p.cond.Wait()
	}
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// attach starts a new session generation on the port.
func (p *port) attach() *sessionConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	p.recent = nil
	p.cond.Broadcast()
	return &sessionConn{p: p, gen: p.gen}
}

// sessionConn is the port as one yamux session sees it. Closing it detaches
// the session and puts what it recently consumed back for rescanning, since
// a new preamble may be among the bytes yamux rejected.
type sessionConn struct {
	p   *port
	gen uint64
}

var errDetached = errors.New("serial session detached")

func (c *sessionConn) Read(b []byte) (int, error) {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && p.err == nil && !p.closed && p.gen == c.gen {
		p.cond.Wait()
	}
	if p.gen != c.gen || (len(p.buf) == 0 && p.closed) {
		return 0, io.EOF
	}
	if len(p.buf) == 0 {
		return 0, p.err
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	p.recent = append(p.recent, b[:n]...)
	if len(p.recent) > 2*recentKeep {
		p.recent = append([]byte(nil), p.recent[len(p.recent)-recentKeep:]...)
	}
	p.cond.Broadcast()
	return n, nil
}

func (c *sessionConn) Write(b []byte) (int, error) {
	p := c.p
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.mu.Lock()
	current := p.gen == c.gen
	p.mu.Unlock()
	if !current {
		return 0, errDetached
	}
	return p.rwc.Write(b)
}

func (c *sessionConn) Close() error {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen == c.gen {
		p.gen++
		if len(p.recent) > recentKeep {
			p.recent = p.recent[len(p.recent)-recentKeep:]
		}
		p.buf = append(p.recent, p.buf...)
		p.recent = nil
		p.cond.Broadcast()
	}
	return nil
}

// dialSerial connects to the host end of the port, resyncs with the agent
// and starts the client side of a yamux session.
func dialSerial(ctx context.Context, dial func(context.Context) (net.Conn, error), timeout time.Duration, log *slog.Logger) (*yamux.Session, error) {
	conn, err := dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("dial agent port: %w", err)
	}
	var nb [nonceLen / 2]byte
	rand.Read(nb[:])
	nonce := hex.EncodeToString(nb[:])
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	rest, err := handshake(conn, nonce)
	if !stop() || ctx.Err() != nil {
		conn.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("agent handshake: no answer within %s (is banger-agent running in the guest?)", timeout)
		}
		return nil, fmt.Errorf("agent handshake: %w", err)
	}
	conn.SetDeadline(time.Time{})
	sess, err := yamux.Client(&prefixConn{Conn: conn, r: io.MultiReader(bytes.NewReader(rest), conn)}, yamuxConfig(log))
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("agent session: %w", err)
	}
	return sess, nil
}

// handshake sends the preamble and skips input up to the matching ACK,
// returning what was read past it (the start of the agent's yamux stream).
func handshake(conn net.Conn, nonce string) ([]byte, error) {
	if _, err := io.WriteString(conn, syncMagic+nonce+"\n"); err != nil {
		return nil, err
	}
	ack := []byte(ackMagic + nonce + "\n")
	var window []byte
	b := make([]byte, 4096)
	for {
		n, err := conn.Read(b)
		window = append(window, b[:n]...)
		if i := bytes.Index(window, ack); i >= 0 {
			return window[i+len(ack):], nil
		}
		if keep := len(ack) - 1; len(window) > keep {
			window = append(window[:0], window[len(window)-keep:]...)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("the port closed before the agent answered")
			}
			return nil, err
		}
	}
}

// prefixConn replays bytes read during the handshake before the rest of conn.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func yamuxConfig(log *slog.Logger) *yamux.Config {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := yamux.DefaultConfig()
	c.LogOutput = nil
	c.Logger = yamuxLogger{log}
	// Software-emulated guests can stall for seconds; a short write timeout
	// would tear sessions down for nothing.
	c.ConnectionWriteTimeout = 30 * time.Second
	return c
}

// yamuxLogger sends yamux's own messages to slog at debug level.
type yamuxLogger struct{ log *slog.Logger }

func (l yamuxLogger) Print(v ...any) { l.log.Debug("yamux: " + fmt.Sprint(v...)) }
func (l yamuxLogger) Printf(format string, v ...any) {
	l.log.Debug("yamux: " + fmt.Sprintf(format, v...))
}
func (l yamuxLogger) Println(v ...any) { l.log.Debug("yamux: " + fmt.Sprint(v...)) }

// OpenSerialPort is the opener ServeSerial needs for a device path.
func OpenSerialPort(path string) func(context.Context) (io.ReadWriteCloser, error) {
	return func(context.Context) (io.ReadWriteCloser, error) {
		return os.OpenFile(path, os.O_RDWR, 0)
	}
}
