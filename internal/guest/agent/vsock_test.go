package agent

import (
	"bufio"
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// fakeFirecracker answers one hybrid-vsock CONNECT the way answer says,
// then echoes, and reports the line it was sent.
func fakeFirecracker(t *testing.T, answer string) (string, <-chan string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "v.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		line, _ := br.ReadString('\n')
		got <- line
		if answer == "" {
			return // nothing listens in the guest: Firecracker hangs up
		}
		io.WriteString(conn, answer)
		io.Copy(conn, br)
	}()
	return sock, got
}

func TestDialFirecrackerVsock(t *testing.T) {
	tests := []struct {
		name    string
		answer  string
		wantErr string
	}{
		{name: "ok", answer: "OK 1073741824\n"},
		{name: "nobody listening", answer: "", wantErr: "nothing listens on guest port 1024"},
		{name: "garbage", answer: "HELLO\n", wantErr: `unexpected answer "HELLO"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock, sent := fakeFirecracker(t, tt.answer)
			conn, err := DialFirecrackerVsock(testContext(t), sock, 1024)
			if line := <-sent; line != "CONNECT 1024\n" {
				t.Errorf("sent %q, want CONNECT 1024", line)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to say %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			io.WriteString(conn, "ping")
			b := make([]byte, 4)
			if _, err := io.ReadFull(conn, b); err != nil || string(b) != "ping" {
				t.Errorf("echo = %q, %v", b, err)
			}
		})
	}
}

func TestDialFirecrackerVsockNoSocket(t *testing.T) {
	_, err := DialFirecrackerVsock(context.Background(), filepath.Join(t.TempDir(), "missing.sock"), 1024)
	if err == nil || !strings.Contains(err.Error(), "missing.sock") {
		t.Errorf("err = %v, want it to name the socket", err)
	}
}
