package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ExecRequest is the body of POST /v1/exec.
type ExecRequest struct {
	// Argv is executed directly, never through a shell.
	Argv []string `json:"argv"`
	// Env is added to the default environment (PATH, HOME, LANG, USER,
	// LOGNAME, and TERM with a tty), replacing variables of the same name.
	Env []string `json:"env,omitempty"`
	// Dir is the working directory (default: the agent's home, /root).
	Dir string `json:"dir,omitempty"`
	// TTY runs the process on a pseudo-terminal of Rows x Cols (default
	// 24x80); stderr is then merged into stdout.
	TTY  bool   `json:"tty,omitempty"`
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
	// Stdin gives the process a stdin pipe fed by stdin frames; without it
	// (and without a tty) stdin is /dev/null.
	Stdin bool `json:"stdin,omitempty"`
}

// Size is a terminal size.
type Size struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// execProtocol is the Upgrade token of the exec stream.
const execProtocol = "banger-exec/1"

// After the 101 answer the exec connection carries frames: 1 byte type,
// 4 bytes big-endian payload length, payload.
const (
	frameStdin    byte = 1 // host->agent: bytes for the process's stdin
	frameStdinEOF byte = 2 // host->agent: stdin is finished
	frameStdout   byte = 3 // agent->host: output (all output with a tty)
	frameStderr   byte = 4 // agent->host
	frameResize   byte = 5 // host->agent: rows, cols as two big-endian uint16
	frameSignal   byte = 6 // host->agent: a signal name allowed by signalByName
	frameExit     byte = 7 // agent->host: big-endian int32 code, then why the process did not start (if it did not); always the last frame
	frameStdinAck byte = 8 // agent->host: big-endian uint32 count of stdin bytes handed to the process
)

const (
	frameHeader     = 5
	maxFramePayload = 1 << 20
	// stdinWindow is how much stdin the host may send ahead of acks, so the
	// agent never buffers more than this however slowly the process reads.
	stdinWindow = 256 << 10
	ioChunk     = 32 << 10
)

// frameWriter serialises frames from several goroutines onto one stream.
type frameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (fw *frameWriter) write(typ byte, payload []byte) error {
	b := make([]byte, frameHeader+len(payload))
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], uint32(len(payload)))
	copy(b[frameHeader:], payload)
	fw.mu.Lock()
	defer fw.mu.Unlock()
	_, err := fw.w.Write(b)
	return err
}

func (fw *frameWriter) writeUint32(typ byte, n uint32) error {
	return fw.write(typ, binary.BigEndian.AppendUint32(nil, n))
}

func (fw *frameWriter) writeExit(code int, msg string) error {
	return fw.write(frameExit, append(binary.BigEndian.AppendUint32(nil, uint32(int32(code))), msg...))
}

func readFrame(r io.Reader) (byte, []byte, error) {
	var h [frameHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFramePayload {
		return 0, nil, fmt.Errorf("exec frame of %d bytes exceeds %d", n, maxFramePayload)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return h[0], b, nil
}

func parseExit(b []byte) (int, string, error) {
	if len(b) < 4 {
		return 0, "", errors.New("short exit frame")
	}
	return int(int32(binary.BigEndian.Uint32(b))), string(b[4:]), nil
}

func parseSize(b []byte) (Size, error) {
	if len(b) != 4 {
		return Size{}, errors.New("resize frame must be 4 bytes")
	}
	return Size{Rows: binary.BigEndian.Uint16(b), Cols: binary.BigEndian.Uint16(b[2:])}, nil
}

func encodeSize(s Size) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, s.Rows), s.Cols)
}
