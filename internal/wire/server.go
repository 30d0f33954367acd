// Package wire is banger's transport: HTTP/1.1 + JSON over unix sockets,
// with SO_PEERCRED authorisation, typed errors and NDJSON event streams.
// The owner daemon and the root helper both serve with it; the CLI and the
// daemon (as the helper's client) call with it.
package wire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/buildinfo"
	"golang.org/x/sys/unix"
)

// Peer is the credential of the process at the other end of a connection.
type Peer struct {
	PID int32
	UID uint32
	GID uint32
}

type peerKey struct{}

// PeerFrom returns the peer credential stored on a request's context.
func PeerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// Authorizer decides whether a peer may talk to the server at all.
type Authorizer func(Peer) error

// AllowUIDs accepts exactly the given uids.
func AllowUIDs(uids ...uint32) Authorizer {
	return func(p Peer) error {
		for _, u := range uids {
			if p.UID == u {
				return nil
			}
		}
		return api.Errorf(api.CodeUnauthorized, "uid %d may not use this socket", p.UID)
	}
}

// Listen creates a unix socket at path with the given mode and owner,
// replacing a stale socket but never any other kind of file. The parent
// directory must already exist with the permissions the caller wants.
func Listen(path string, mode os.FileMode, uid, gid int) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen %s: another server is already answering there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	if uid >= 0 && (uid != os.Getuid() || gid != os.Getgid()) {
		if err := os.Lchown(path, uid, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("chown %s: %w", path, err)
		}
	}
	return ln, nil
}

// EnsureDir creates dir (and parents) and forces its mode and owner, refusing
// a symlink in its place.
func EnsureDir(dir string, mode os.FileMode, uid, gid int) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := os.Chmod(dir, mode); err != nil {
		return err
	}
	if uid >= 0 {
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != uid || int(st.Gid) != gid {
			if err := os.Lchown(dir, uid, gid); err != nil {
				return err
			}
		}
	}
	return nil
}

// Server is an http.Server bound to a unix listener with peer checks.
type Server struct {
	Handler   http.Handler
	Authorize Authorizer
	Log       *slog.Logger
	// Version is sent back on every response for the handshake.
	Version buildinfo.Info

	srv  *http.Server
	opID atomic.Uint64
}

// Serve accepts connections until ctx is done, then shuts down gracefully,
// letting in-flight requests finish for up to grace.
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	s.srv = &http.Server{
		Handler: s.wrap(s.Handler),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if p, err := peerOf(c); err == nil {
				ctx = context.WithValue(ctx, peerKey{}, p)
			}
			return ctx
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		s.srv.Close()
	}
	return nil
}

func peerOf(c net.Conn) (Peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}, errors.New("not a unix connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if cerr != nil {
		return Peer{}, cerr
	}
	return Peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, nil
}

func (s *Server) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		opID := strconv.FormatUint(s.opID.Add(1), 36) + "-" + strconv.FormatInt(time.Now().UnixMilli()%100000, 36)
		w.Header().Set(api.HeaderVersion, s.Version.Version)
		w.Header().Set(api.HeaderAPIVersion, strconv.Itoa(s.Version.APIVersion))
		w.Header().Set(api.HeaderOpID, opID)
		log := s.Log
		if log == nil {
			log = slog.New(slog.NewTextHandler(io.Discard, nil))
		}
		peer, ok := PeerFrom(r.Context())
		if !ok {
			WriteError(w, api.Errorf(api.CodeUnauthorized, "cannot read the caller's credentials"), opID)
			return
		}
		if s.Authorize != nil {
			if err := s.Authorize(peer); err != nil {
				log.Warn("refused caller", "op_id", opID, "uid", peer.UID, "pid", peer.PID, "path", r.URL.Path)
				WriteError(w, err, opID)
				return
			}
		}
		if v := r.Header.Get(api.HeaderAPIVersion); v != "" && v != strconv.Itoa(s.Version.APIVersion) {
			WriteError(w, &api.Error{Code: api.CodeBadVersion,
				Message: fmt.Sprintf("client speaks API v%s, server (%s) speaks v%d", v, s.Version.Version, s.Version.APIVersion),
				Hint:    "use the banger CLI that matches the running daemon, or restart the daemon after upgrading (sudo banger system restart)"}, opID)
			return
		}
		start := time.Now()
		rw := &statusWriter{ResponseWriter: w, status: 200}
		h.ServeHTTP(rw, r.WithContext(withOpID(r.Context(), opID)))
		log.Debug("request", "op_id", opID, "method", r.Method, "path", r.URL.Path, "uid", peer.UID,
			"status", rw.status, "took", time.Since(start).Round(time.Millisecond))
	})
}

type opIDKey struct{}

func withOpID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, opIDKey{}, id)
}

// OpID returns the operation id of the request whose context this is.
func OpID(ctx context.Context) string {
	id, _ := ctx.Value(opIDKey{}).(string)
	return id
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer
// (needed for hijacking upgraded connections).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v != nil {
		json.NewEncoder(w).Encode(v)
	}
}

// WriteError answers with err's wire form and the status its code maps to.
func WriteError(w http.ResponseWriter, err error, opID string) {
	b := api.Body(err, opID)
	WriteJSON(w, api.HTTPStatus(b.Code), b)
}

// DecodeJSON reads a JSON request body into v, rejecting unknown fields.
func DecodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 8<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return api.Errorf(api.CodeBadRequest, "bad request body: %v", err)
	}
	return nil
}

// Stream writes newline-delimited JSON events, flushing after each.
type Stream struct {
	w   http.ResponseWriter
	enc *json.Encoder
}

// NewStream starts an event-stream response.
func NewStream(w http.ResponseWriter) *Stream {
	w.Header().Set("Content-Type", api.ContentTypeStream)
	w.WriteHeader(200)
	return &Stream{w: w, enc: json.NewEncoder(w)}
}

// Send writes one event.
func (s *Stream) Send(ev api.Event) error {
	if err := s.enc.Encode(ev); err != nil {
		return err
	}
	http.NewResponseController(s.w).Flush()
	return nil
}

// Progress sends a progress event.
func (s *Stream) Progress(stage, msg string, cur, total int64) {
	s.Send(api.Event{Type: api.EventProgress, Stage: stage, Message: msg, Current: cur, Total: total})
}

// Finish sends the final result or error event.
func (s *Stream) Finish(ctx context.Context, result any, err error) {
	if err != nil {
		s.Send(api.Event{Type: api.EventError, Error: api.Body(err, OpID(ctx))})
		return
	}
	raw, merr := json.Marshal(result)
	if merr != nil {
		s.Send(api.Event{Type: api.EventError, Error: api.Body(merr, OpID(ctx))})
		return
	}
	s.Send(api.Event{Type: api.EventResult, Result: raw})
}
