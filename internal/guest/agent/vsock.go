package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/mdlayher/vsock"
)

// ListenVsock listens on an AF_VSOCK port of the guest.
func ListenVsock(port uint32) (net.Listener, error) {
	ln, err := vsock.Listen(port, nil)
	if err != nil {
		return nil, fmt.Errorf("listen vsock port %d: %w", port, err)
	}
	return ln, nil
}

// DialFirecrackerVsock connects to guest vsock port through Firecracker's
// hybrid vsock unix socket: "CONNECT <port>\n" answered by "OK <n>\n",
// after which the connection is the guest's stream.
func DialFirecrackerVsock(ctx context.Context, udsPath string, port uint32) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", udsPath)
	if err != nil {
		return nil, fmt.Errorf("dial firecracker vsock %s: %w", udsPath, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	line, err := connectVsock(conn, port)
	if !stop() || ctx.Err() != nil {
		conn.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("vsock CONNECT %d via %s: %w", port, udsPath, err)
	}
	if f := strings.Fields(line); len(f) != 2 || f[0] != "OK" || !isUint(f[1]) {
		conn.Close()
		return nil, fmt.Errorf("vsock CONNECT %d via %s: unexpected answer %q", port, udsPath, line)
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

func connectVsock(conn net.Conn, port uint32) (string, error) {
	if _, err := fmt.Fprintf(conn, "CONNECT %d\n", port); err != nil {
		return "", err
	}
	// One byte at a time: whatever follows the line belongs to the guest.
	var line []byte
	b := make([]byte, 1)
	for len(line) < 64 {
		if _, err := conn.Read(b); err != nil {
			if errors.Is(err, io.EOF) {
				return "", fmt.Errorf("firecracker closed the connection: nothing listens on guest port %d (is banger-agent running?)", port)
			}
			return "", err
		}
		if b[0] == '\n' {
			return string(line), nil
		}
		line = append(line, b[0])
	}
	return "", fmt.Errorf("answer %q is too long", line)
}

func isUint(s string) bool {
	_, err := strconv.ParseUint(s, 10, 32)
	return err == nil
}
