package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// QMP is a connection to QEMU's machine protocol: JSON objects over a unix
// socket, one command in flight at a time, events interleaved with replies.
// QEMU serves one QMP client per socket at a time, so callers dial, ask
// and close rather than hold a connection.
type QMP struct {
	conn net.Conn
	dec  *json.Decoder
}

// QMPError is an error reply from QEMU.
type QMPError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *QMPError) Error() string { return e.Class + ": " + e.Desc }

// Status is the answer to query-status.
type Status struct {
	Status  string `json:"status"` // "running", "paused", "shutdown", "io-error", ...
	Running bool   `json:"running"`
}

// DialQMP connects to the QMP socket at path, reads QEMU's greeting and
// leaves capability negotiation mode, so commands can follow.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", path, err)
	}
	q := &QMP{conn: conn, dec: json.NewDecoder(conn)}
	err = q.call(ctx, func() error {
		var greeting struct {
			QMP *json.RawMessage `json:"QMP"`
		}
		if err := q.dec.Decode(&greeting); err != nil {
			return fmt.Errorf("read greeting: %w", err)
		}
		if greeting.QMP == nil {
			return errors.New("no QMP greeting")
		}
		return q.exchange("qmp_capabilities", nil, nil)
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp %s: %w", path, err)
	}
	return q, nil
}

// Close ends the connection.
func (q *QMP) Close() error { return q.conn.Close() }

// Execute runs one command. args and out may be nil; out receives the
// "return" value.
func (q *QMP) Execute(ctx context.Context, command string, args, out any) error {
	if err := q.call(ctx, func() error { return q.exchange(command, args, out) }); err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	return nil
}

// Status asks whether the guest runs.
func (q *QMP) Status(ctx context.Context) (Status, error) {
	var s Status
	err := q.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// Version is QEMU's version, "7.2.22".
func (q *QMP) Version(ctx context.Context) (string, error) {
	var v struct {
		QEMU struct {
			Major, Minor, Micro int
		} `json:"qemu"`
	}
	if err := q.Execute(ctx, "query-version", nil, &v); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d.%d.%d", v.QEMU.Major, v.QEMU.Minor, v.QEMU.Micro), nil
}

// Powerdown presses the guest's ACPI power button. The guest decides what
// to do about it.
func (q *QMP) Powerdown(ctx context.Context) error {
	return q.Execute(ctx, "system_powerdown", nil, nil)
}

// Quit makes QEMU exit at once, as if the power cord were pulled, but
// after flushing its own state.
func (q *QMP) Quit(ctx context.Context) error {
	err := q.Execute(ctx, "quit", nil, nil)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil // QEMU may close before its reply is read
	}
	return err
}

// call runs fn with the connection's deadline tied to ctx.
func (q *QMP) call(ctx context.Context, fn func() error) error {
	dl, _ := ctx.Deadline()
	if err := q.conn.SetDeadline(dl); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { q.conn.SetDeadline(time.Unix(1, 0)) })
	err := fn()
	stop()
	if err != nil && ctx.Err() != nil {
		return ctx.Err() // the cause, rather than "i/o timeout"
	}
	return err
}

// exchange sends one command and reads until its reply, skipping events.
func (q *QMP) exchange(command string, args, out any) error {
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
	}{command, args}
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return err
	}
	for {
		var msg struct {
			Return *json.RawMessage `json:"return"`
			Error  *QMPError        `json:"error"`
			Event  string           `json:"event"`
		}
		if err := q.dec.Decode(&msg); err != nil {
			return err
		}
		switch {
		case msg.Error != nil:
			return msg.Error
		case msg.Return != nil:
			if out == nil {
				return nil
			}
			return json.Unmarshal(*msg.Return, out)
		}
		// An event ({"event": "RESET", ...}): not ours to handle.
	}
}
