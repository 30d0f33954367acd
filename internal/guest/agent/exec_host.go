package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// StartError reports a command the agent could not start.
type StartError struct {
	Code    int // 127 not found, 126 not runnable
	Message string
}

func (e *StartError) Error() string { return e.Message }

// Exec runs req in the guest, streaming stdin to it and its output to
// stdout and stderr (either may be nil), applying terminal sizes from
// resize and signal names (INT, TERM, KILL, HUP, QUIT, USR1, USR2, WINCH)
// from signals. It returns the exit code, 128+signo for a signalled
// process. A process that could not start returns 126/127 and a
// *StartError. When ctx ends the process gets TERM, then KILL after the
// client's KillGrace; the error is then ctx's.
//
// stdin is read by a goroutine that may outlive Exec if its Read blocks.
func (c *Client) Exec(ctx context.Context, req ExecRequest, stdin io.Reader, stdout, stderr io.Writer, resize <-chan Size, signals <-chan string) (int, error) {
	if len(req.Argv) == 0 {
		return -1, errors.New("exec: argv is empty")
	}
	if stdin != nil {
		req.Stdin = true
	}
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	rwc, err := c.openExec(ctx, req)
	if err != nil {
		return -1, fmt.Errorf("exec %q: %w", req.Argv[0], err)
	}
	defer rwc.Close()

	fw := &frameWriter{w: rwc}
	cr := newCredits(stdinWindow)
	defer cr.close()
	type result struct {
		code int
		msg  string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, msg, err := readExecFrames(rwc, stdout, stderr, cr)
		done <- result{code, msg, err}
	}()
	switch {
	case stdin != nil:
		go pumpStdin(stdin, fw, cr)
	case req.Stdin:
		fw.write(frameStdinEOF, nil)
	}

	ctxDone := ctx.Done()
	var killAt, abandonAt <-chan time.Time
	for {
		select {
		case r := <-done:
			if r.err != nil {
				return -1, fmt.Errorf("exec %q: %w", req.Argv[0], r.err)
			}
			if r.msg != "" {
				return r.code, &StartError{Code: r.code, Message: r.msg}
			}
			if ctx.Err() != nil {
				return r.code, fmt.Errorf("exec %q: %w", req.Argv[0], ctx.Err())
			}
			return r.code, nil
		case s, ok := <-resize:
			if !ok {
				resize = nil
				continue
			}
			fw.write(frameResize, encodeSize(s))
		case name, ok := <-signals:
			if !ok {
				signals = nil
				continue
			}
			fw.write(frameSignal, []byte(name))
		case <-ctxDone:
			ctxDone = nil
			fw.write(frameSignal, []byte("TERM"))
			killAt = time.After(c.killGrace)
		case <-killAt:
			fw.write(frameSignal, []byte("KILL"))
			abandonAt = time.After(c.killGrace)
		case <-abandonAt:
			// Closing makes the agent kill the process group too.
			return -1, fmt.Errorf("exec %q: %w (no exit status after KILL)", req.Argv[0], ctx.Err())
		}
	}
}

// openExec sends the request and returns the upgraded stream.
func (c *Client) openExec(ctx context.Context, req ExecRequest) (io.ReadWriteCloser, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	// The stream must outlive ctx long enough to deliver TERM and KILL, so
	// ctx only governs getting the 101.
	reqCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	hr, err := c.request(reqCtx, http.MethodPost, "/v1/exec", nil, bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Connection", "Upgrade")
	hr.Header.Set("Upgrade", execProtocol)
	resp, err := c.do(hr, http.StatusSwitchingProtocols)
	if !stop() {
		if err == nil {
			resp.Body.Close()
		}
		return nil, ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, err
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		cancel()
		return nil, errors.New("agent answered 101 without a writable stream")
	}
	return &cancelOnClose{ReadWriteCloser: rwc, cancel: cancel}, nil
}

type cancelOnClose struct {
	io.ReadWriteCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadWriteCloser.Close()
	c.cancel()
	return err
}

func readExecFrames(r io.Reader, stdout, stderr io.Writer, cr *credits) (int, string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var werr error
	for {
		typ, b, err := readFrame(br)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = errors.New("the agent closed the exec stream without an exit status")
			}
			return -1, "", err
		}
		switch typ {
		case frameStdout, frameStderr:
			w := stdout
			if typ == frameStderr {
				w = stderr
			}
			// After a local write error keep reading, so the exit status
			// still arrives and the guest is never stuck on a full stream.
			if werr == nil {
				if _, err := w.Write(b); err != nil {
					werr = err
				}
			}
		case frameStdinAck:
			if len(b) != 4 {
				return -1, "", errors.New("bad stdin ack frame")
			}
			cr.release(int(binary.BigEndian.Uint32(b)))
		case frameExit:
			code, msg, err := parseExit(b)
			if err != nil {
				return -1, "", err
			}
			if werr != nil && msg == "" {
				return -1, "", fmt.Errorf("write output: %w", werr)
			}
			return code, msg, nil
		default:
			return -1, "", fmt.Errorf("unexpected exec frame type %d", typ)
		}
	}
}

// pumpStdin sends stdin in chunks the agent's window allows, then EOF.
func pumpStdin(r io.Reader, fw *frameWriter, cr *credits) {
	b := make([]byte, ioChunk)
	for {
		n, err := r.Read(b)
		if n > 0 {
			if !cr.acquire(n) || fw.write(frameStdin, b[:n]) != nil {
				return
			}
		}
		if err != nil {
			fw.write(frameStdinEOF, nil)
			return
		}
	}
}

// credits is the host's view of the agent's stdin window.
type credits struct {
	mu     sync.Mutex
	cond   sync.Cond
	avail  int
	closed bool
}

func newCredits(n int) *credits {
	c := &credits{avail: n}
	c.cond.L = &c.mu
	return c
}

func (c *credits) acquire(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.avail < n && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		return false
	}
	c.avail -= n
	return true
}

func (c *credits) release(n int) {
	c.mu.Lock()
	c.avail += n
	c.cond.Broadcast()
	c.mu.Unlock()
}

func (c *credits) close() {
	c.mu.Lock()
	c.closed = true
	c.cond.Broadcast()
	c.mu.Unlock()
}
