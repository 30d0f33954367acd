package agent

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// socketpair is a buffered, bidirectional byte stream like the two ends of
// a virtio-serial port.
func socketpair(t *testing.T) (host, guest net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	t.Cleanup(func() { conns[0].Close(); conns[1].Close() })
	return conns[0], conns[1]
}

// serialPort plays QEMU: each host dial makes a new connection whose guest
// end the agent gets from its next open, with stale bytes already queued
// in both directions.
type serialPort struct {
	t      *testing.T
	guests chan net.Conn
	mu     sync.Mutex
	hosts  []net.Conn
}

func newSerialPort(t *testing.T, a *Agent) *serialPort {
	p := &serialPort{t: t, guests: make(chan net.Conn, 4)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.ServeSerial(ctx, func(ctx context.Context) (io.ReadWriteCloser, error) {
			select {
			case c := <-p.guests:
				return c, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return p
}

// junk looks like the tail of a dead session: binary yamux-ish bytes and
// a truncated preamble.
const junk = "\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x20garbage\nBANGER-AGENT-SYNC v1 deadbeef\nBANGER-AGE"

func (p *serialPort) dial(ctx context.Context) (net.Conn, error) {
	host, guest := socketpair(p.t)
	io.WriteString(host, junk)
	io.WriteString(guest, junk)
	p.mu.Lock()
	p.hosts = append(p.hosts, host)
	p.mu.Unlock()
	p.guests <- guest
	return host, nil
}

func (p *serialPort) lastHost() net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hosts[len(p.hosts)-1]
}

func checkRoundTrip(t *testing.T, ctx context.Context, c *Client) {
	t.Helper()
	if h, err := c.Health(ctx); err != nil || !h.Ready || h.AgentVersion != "serial-test" {
		t.Fatalf("health = %+v, %v", h, err)
	}
	var out bytes.Buffer
	in := strings.Repeat("through yamux\n", 50000) // several stream windows
	code, err := c.Exec(ctx, ExecRequest{Argv: []string{"cat"}}, strings.NewReader(in), &out, nil, nil, nil)
	if err != nil || code != 0 {
		t.Fatalf("exec: code %d, err %v", code, err)
	}
	if out.String() != in {
		t.Fatalf("cat returned %d bytes, want %d", out.Len(), len(in))
	}
}

func TestSerialHandshakeAndReconnect(t *testing.T) {
	ctx := testContext(t)
	port := newSerialPort(t, New(Config{Version: "serial-test", Home: t.TempDir()}))

	c, err := NewSerialClient(ctx, port.dial)
	if err != nil {
		t.Fatal(err)
	}
	checkRoundTrip(t, ctx, c)

	// The daemon restarts: its connection closes, the agent reads EOF,
	// reopens the port and answers the next host.
	c.Close()
	c2 := NewClient(ClientConfig{Dial: port.dial, Serial: true})
	defer c2.Close()
	checkRoundTrip(t, ctx, c2)

	// The connection dies under a live client: the next call reconnects.
	port.lastHost().Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c2.lock <- struct{}{}
		closed := c2.sess == nil || c2.sess.IsClosed()
		<-c2.lock
		if closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the client never noticed its session died")
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkRoundTrip(t, ctx, c2)
	port.mu.Lock()
	dials := len(port.hosts)
	port.mu.Unlock()
	if dials != 3 {
		t.Errorf("dialled %d times, want 3 (one per session)", dials)
	}
}

// sharedEnd is the host end of a port that stays open across host
// processes, so the agent never reads EOF: closing a client only stops its
// reads (as a process exiting would), the stream itself goes on.
type sharedEnd struct{ net.Conn }

func (s sharedEnd) Close() error { return s.Conn.SetReadDeadline(time.Unix(1, 0)) }

func TestSerialResyncWithoutEOF(t *testing.T) {
	ctx := testContext(t)
	a := New(Config{Version: "serial-test", Home: t.TempDir()})
	port := newSerialPort(t, a)
	host, guest := socketpair(t)
	port.guests <- guest
	dial := func(context.Context) (net.Conn, error) { return sharedEnd{host}, nil }

	for i := range 4 {
		c := NewClient(ClientConfig{Dial: dial, Serial: true})
		checkRoundTrip(t, ctx, c)
		c.Close()
		// The next host's preamble (after half a frame from the dead host
		// in odd rounds) reaches the agent's live session: yamux must fail
		// on it and the agent find the preamble in what yamux consumed.
		if i%2 == 1 {
			if _, err := host.Write([]byte("\xffhalf a frame")); err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
		}
	}
}

func TestSerialHandshakeTimesOut(t *testing.T) {
	// Something that never answers the preamble (no agent in the guest).
	host, _ := socketpair(t)
	start := time.Now()
	_, err := dialSerial(testContext(t), func(context.Context) (net.Conn, error) { return host, nil }, 200*time.Millisecond, nil)
	if err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Errorf("err = %v, want a handshake timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timed out after %s", d)
	}
}

func TestAwaitSync(t *testing.T) {
	nonce := strings.Repeat("ab", nonceLen/2)
	tests := []struct {
		name  string
		input []string // written in this order
		want  string
		rest  string
	}{
		{"clean", []string{syncMagic + nonce + "\n"}, nonce, ""},
		{"junk first", []string{"\x00\x01junk" + syncMagic + nonce + "\nyamux"}, nonce, "yamux"},
		{"split across reads", []string{"xx" + syncMagic[:7], syncMagic[7:] + nonce[:5], nonce[5:] + "\n"}, nonce, ""},
		{"damaged preamble skipped", []string{syncMagic + "zz\n" + syncMagic + nonce + "\n"}, nonce, ""},
		{"upper-case nonce is not ours", []string{syncMagic + strings.ToUpper(nonce) + "\n" + syncMagic + nonce + "\n"}, nonce, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, guest := socketpair(t)
			p := newPort(guest)
			go p.pump()
			go func() {
				for _, s := range tt.input {
					host.Write([]byte(s))
					time.Sleep(5 * time.Millisecond)
				}
			}()
			got, err := p.awaitSync(testContext(t))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("nonce = %q, want %q", got, tt.want)
			}
			time.Sleep(20 * time.Millisecond)
			p.mu.Lock()
			rest := string(p.buf)
			p.mu.Unlock()
			if rest != tt.rest {
				t.Errorf("left %q for the session, want %q", rest, tt.rest)
			}
		})
	}
}
