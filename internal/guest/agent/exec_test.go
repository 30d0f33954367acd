package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// syncBuffer is an output sink a test can watch while Exec runs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls until the buffer contains s.
func (b *syncBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q never contained %q", b.String(), s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExec(t *testing.T) {
	home := t.TempDir()
	notExec := filepath.Join(home, "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(home, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "bin", "hello"), []byte("#!/bin/sh\necho hello from PATH\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: four stdin windows
	c := serveUnix(t, New(Config{Home: home}), ClientConfig{})

	tests := []struct {
		name       string
		req        ExecRequest
		stdin      []byte
		wantOut    string
		wantErr    string
		wantCode   int
		wantStartE bool
	}{
		{name: "stdout and stderr apart",
			req:     ExecRequest{Argv: []string{"sh", "-c", "echo out; echo err >&2; echo out2"}},
			wantOut: "out\nout2\n", wantErr: "err\n"},
		{name: "stdin through cat",
			req: ExecRequest{Argv: []string{"cat"}}, stdin: []byte("hello\nworld\n"), wantOut: "hello\nworld\n"},
		{name: "stdin larger than the window",
			req: ExecRequest{Argv: []string{"cat"}}, stdin: big, wantOut: string(big)},
		{name: "no stdin reads EOF",
			req: ExecRequest{Argv: []string{"cat"}}, wantOut: ""},
		{name: "exit code",
			req: ExecRequest{Argv: []string{"sh", "-c", "exit 42"}}, wantCode: 42},
		{name: "killed by TERM",
			req: ExecRequest{Argv: []string{"sh", "-c", "kill -TERM $$"}}, wantCode: 128 + 15},
		{name: "not found",
			req: ExecRequest{Argv: []string{"banger-no-such-command"}}, wantCode: 127, wantStartE: true},
		{name: "missing absolute path",
			req: ExecRequest{Argv: []string{"/nonexistent/bin/tool"}}, wantCode: 127, wantStartE: true},
		{name: "not executable",
			req: ExecRequest{Argv: []string{notExec}}, wantCode: 126, wantStartE: true},
		{name: "missing dir",
			req: ExecRequest{Argv: []string{"true"}, Dir: "/nonexistent/dir"}, wantCode: 126, wantStartE: true},
		{name: "default env and dir",
			req:     ExecRequest{Argv: []string{"sh", "-c", `echo "$HOME|$LANG|$TERM|$PWD"`}},
			wantOut: home + "|C.UTF-8||" + home + "\n"},
		{name: "env added and overridden, dir",
			req:     ExecRequest{Argv: []string{"sh", "-c", `echo "$FOO|$LANG"; pwd`}, Env: []string{"FOO=bar", "LANG=de_DE.UTF-8"}, Dir: "/tmp"},
			wantOut: "bar|de_DE.UTF-8\n/tmp\n"},
		{name: "PATH from env finds the binary",
			req:     ExecRequest{Argv: []string{"hello"}, Env: []string{"PATH=" + filepath.Join(home, "bin")}},
			wantOut: "hello from PATH\n"},
		{name: "found on PATH but not executable",
			req: ExecRequest{Argv: []string{"script"}, Env: []string{"PATH=" + home}}, wantCode: 126, wantStartE: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			var stdin io.Reader
			if tt.stdin != nil {
				stdin = bytes.NewReader(tt.stdin)
			}
			code, err := c.Exec(testContext(t), tt.req, stdin, &stdout, &stderr, nil, nil)
			var se *StartError
			if tt.wantStartE {
				if !errors.As(err, &se) || se.Code != tt.wantCode {
					t.Fatalf("err = %v, want a StartError with code %d", err, tt.wantCode)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d", code, tt.wantCode)
			}
			if got := stdout.String(); got != tt.wantOut {
				if len(got) > 200 {
					t.Errorf("stdout: %d bytes, want %d", len(got), len(tt.wantOut))
				} else {
					t.Errorf("stdout = %q, want %q", got, tt.wantOut)
				}
			}
			if got := stderr.String(); got != tt.wantErr {
				t.Errorf("stderr = %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func TestExecSignalFrame(t *testing.T) {
	c := serveUnix(t, New(Config{Home: t.TempDir()}), ClientConfig{})
	signals := make(chan string)
	var out syncBuffer
	done := make(chan error, 1)
	var code int
	go func() {
		var err error
		code, err = c.Exec(testContext(t), ExecRequest{Argv: []string{"sh", "-c", "echo ready; sleep 30; echo not reached"}}, nil, &out, nil, nil, signals)
		done <- err
	}()
	// dash loses a SIGINT that arrives while it is starting up: signal
	// once it has run something, as a user at a keyboard would.
	out.waitFor(t, "ready\n")
	signals <- "INT"
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// INT went to the group: sleep died of it and so did sh.
	if code != 128+2 {
		t.Errorf("exit code = %d, want %d", code, 128+2)
	}
	if strings.Contains(out.String(), "not reached") {
		t.Errorf("output %q: the shell went on after INT", out.String())
	}
}

func TestExecCancelSendsTerm(t *testing.T) {
	c := serveUnix(t, New(Config{Home: t.TempDir()}), ClientConfig{KillGrace: 5 * time.Second})
	ctx, cancel := context.WithTimeout(testContext(t), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	code, err := c.Exec(ctx, ExecRequest{Argv: []string{"sleep", "30"}}, nil, nil, nil, nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's error", err)
	}
	if code != 128+15 {
		t.Errorf("exit code = %d, want %d (TERM)", code, 128+15)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("took %s: TERM did not end sleep", d)
	}
}

func TestExecHostDisconnectKillsProcessGroup(t *testing.T) {
	sock := listenUnix(t, New(Config{Home: t.TempDir()}))
	var mu sync.Mutex
	var conns []net.Conn
	c := NewClient(ClientConfig{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", sock)
		if err == nil {
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
		return conn, err
	}})
	defer c.Close()
	ctx := testContext(t)

	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		// The background sleep shares the group; both must die.
		_, err := c.Exec(ctx, ExecRequest{Argv: []string{"sh", "-c", "sleep 30 & echo $$ $!; wait"}}, nil, &out, nil, nil, nil)
		done <- err
	}()
	out.waitFor(t, "\n")
	var pids []int
	for _, f := range strings.Fields(out.String()) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("output %q: %v", out.String(), err)
		}
		pids = append(pids, pid)
	}
	mu.Lock()
	for _, conn := range conns {
		conn.Close()
	}
	mu.Unlock()
	if err := <-done; err == nil {
		t.Error("Exec returned no error after its connection was cut")
	}
	for _, pid := range pids {
		deadline := time.Now().Add(5 * time.Second)
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still alive after the host went away", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestExecTTY(t *testing.T) {
	c := serveUnix(t, New(Config{Home: t.TempDir()}), ClientConfig{})
	ctx := testContext(t)

	t.Run("tty and merged stderr", func(t *testing.T) {
		var out, errOut bytes.Buffer
		code, err := c.Exec(ctx, ExecRequest{Argv: []string{"sh", "-c", "tty; echo to-stderr >&2; echo $TERM"}, TTY: true}, nil, &out, &errOut, nil, nil)
		if err != nil || code != 0 {
			t.Fatalf("code %d, err %v", code, err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\r\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "/dev/pts/") || lines[1] != "to-stderr" || lines[2] != "xterm-256color" {
			t.Errorf("output = %q, want a /dev/pts name, the stderr line and TERM", out.String())
		}
		if errOut.Len() != 0 {
			t.Errorf("stderr = %q, want everything on stdout with a tty", errOut.String())
		}
	})

	t.Run("size and resize", func(t *testing.T) {
		var out syncBuffer
		resize := make(chan Size)
		signals := make(chan string, 1)
		type result struct {
			code int
			err  error
		}
		done := make(chan result, 1)
		go func() {
			code, err := c.Exec(ctx, ExecRequest{
				Argv: []string{"sh", "-c", `trap 'stty size' WINCH; stty size; while :; do sleep 0.05; done`},
				TTY:  true, Rows: 33, Cols: 101,
			}, nil, &out, nil, resize, signals)
			done <- result{code, err}
		}()
		out.waitFor(t, "33 101\r\n")
		resize <- Size{Rows: 40, Cols: 120}
		out.waitFor(t, "40 120\r\n")
		signals <- "KILL"
		r := <-done
		if r.err != nil || r.code != 128+9 {
			t.Errorf("code %d, err %v; want 137", r.code, r.err)
		}
	})

	t.Run("stdin", func(t *testing.T) {
		var out bytes.Buffer
		code, err := c.Exec(ctx, ExecRequest{Argv: []string{"sh", "-c", "read line; echo got:$line"}, TTY: true},
			strings.NewReader("hi\n"), &out, nil, nil, nil)
		if err != nil || code != 0 {
			t.Fatalf("code %d, err %v", code, err)
		}
		// The terminal echoes the input line, then the answer.
		if diff := cmp.Diff("hi\r\ngot:hi\r\n", out.String()); diff != "" {
			t.Errorf("output (-want +got):\n%s", diff)
		}
	})
}

func TestExecOutputComesBeforeExit(t *testing.T) {
	// A background child keeps stdout open after the shell exits: the exit
	// status must still arrive, with everything the shell wrote first.
	c := serveUnix(t, New(Config{Home: t.TempDir()}), ClientConfig{})
	var out bytes.Buffer
	start := time.Now()
	code, err := c.Exec(testContext(t), ExecRequest{Argv: []string{"sh", "-c", "seq 1 20000; sleep 5 & exit 3"}}, nil, &out, nil, nil, nil)
	if err != nil || code != 3 {
		t.Fatalf("code %d, err %v", code, err)
	}
	if lines := strings.Count(out.String(), "\n"); lines != 20000 {
		t.Errorf("got %d lines before the exit status, want 20000", lines)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s: waited for the background child", d)
	}
}

// alive reports whether pid exists and is not a zombie: a killed
// background child is reparented to PID 1, which may reap it late.
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	_, after, ok := strings.Cut(string(b), ") ")
	return ok && !strings.HasPrefix(after, "Z")
}
