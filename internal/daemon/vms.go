package daemon

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/sandbox"
	"github.com/banger/banger/internal/wire"
)

// vmRoutes registers /v1/vms/... (VM lifecycle).
func (d *Daemon) vmRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/vms", handler(func(r *http.Request) ([]api.VM, error) { return d.vms.List(r.Context()) }))
	mux.Handle("POST /v1/vms", streamHandler(func(r *http.Request, p sandbox.Progress) (api.VM, error) {
		var req api.CreateVM
		if err := wire.DecodeJSON(r, &req); err != nil {
			return api.VM{}, err
		}
		return d.vms.Create(r.Context(), req, p)
	}))
	mux.Handle("GET /v1/vms/{name}", handler(func(r *http.Request) (api.VM, error) { return d.vms.Get(r.Context(), r.PathValue("name")) }))
	mux.Handle("POST /v1/vms/{name}/start", streamHandler(func(r *http.Request, p sandbox.Progress) (api.VM, error) {
		return d.vms.Start(r.Context(), r.PathValue("name"), p)
	}))
	mux.Handle("POST /v1/vms/{name}/restart", streamHandler(func(r *http.Request, p sandbox.Progress) (api.VM, error) {
		return d.vms.Restart(r.Context(), r.PathValue("name"), p)
	}))
	mux.Handle("POST /v1/vms/{name}/stop", handler(func(r *http.Request) (api.VM, error) { return d.vms.Stop(r.Context(), r.PathValue("name")) }))
	mux.Handle("POST /v1/vms/{name}/kill", handler(func(r *http.Request) (api.VM, error) { return d.vms.Kill(r.Context(), r.PathValue("name")) }))
	mux.Handle("DELETE /v1/vms/{name}", handler(func(r *http.Request) (struct{}, error) {
		return struct{}{}, d.vms.Delete(r.Context(), r.PathValue("name"))
	}))
	mux.Handle("POST /v1/vms/{name}/set", handler(func(r *http.Request) (api.VM, error) {
		var req api.SetVM
		if err := wire.DecodeJSON(r, &req); err != nil {
			return api.VM{}, err
		}
		return d.vms.Set(r.Context(), r.PathValue("name"), req)
	}))
	mux.Handle("POST /v1/vms/{name}/forwards", handler(func(r *http.Request) (api.VM, error) {
		var req struct {
			Forwards []string `json:"forwards"`
		}
		if err := wire.DecodeJSON(r, &req); err != nil {
			return api.VM{}, err
		}
		return d.vms.AddForwards(r.Context(), r.PathValue("name"), req.Forwards)
	}))
	mux.Handle("GET /v1/vms/{name}/ports", handler(func(r *http.Request) ([]api.Port, error) { return d.vms.Ports(r.Context(), r.PathValue("name")) }))
	mux.Handle("GET /v1/vms/{name}/stats", handler(func(r *http.Request) (api.VMStats, error) { return d.vms.Stats(r.Context(), r.PathValue("name")) }))
	mux.Handle("POST /v1/vms/prune", handler(func(r *http.Request) (api.Names, error) {
		names, err := d.vms.Prune(r.Context())
		if names == nil {
			names = []string{}
		}
		return api.Names{Names: names}, err
	}))
	mux.HandleFunc("GET /v1/vms/{name}/logs", d.vmLogs)
	mux.HandleFunc("POST /v1/vms/{name}/agent", d.vmAgent)
}

// streamHandler answers with progress events, then the result.
func streamHandler[T any](fn func(r *http.Request, p sandbox.Progress) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := wire.NewStream(w)
		v, err := fn(r, func(ev api.Event) { s.Send(ev) })
		s.Finish(r.Context(), v, err)
	}
}

// vmLogs streams a VM's console log: the last `lines` lines (all when 0),
// then, with follow=1, whatever the console writes until the client goes.
func (d *Daemon) vmLogs(w http.ResponseWriter, r *http.Request) {
	path, err := d.vms.LogPath(r.PathValue("name"))
	if err != nil {
		wire.WriteError(w, err, wire.OpID(r.Context()))
		return
	}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if r.URL.Query().Get("follow") != "1" {
			return
		}
		for os.IsNotExist(err) {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
			f, err = os.Open(path)
		}
	}
	if err != nil {
		wire.WriteError(w, err, wire.OpID(r.Context()))
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if n, _ := strconv.Atoi(r.URL.Query().Get("lines")); n > 0 {
		seekTail(f, n)
	}
	flush := func() { http.NewResponseController(w).Flush() }
	io.Copy(w, f)
	flush()
	if r.URL.Query().Get("follow") != "1" {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
		if n, _ := io.Copy(w, f); n > 0 {
			flush()
		}
	}
}

// seekTail positions f at the start of its last n lines.
func seekTail(f *os.File, n int) {
	fi, err := f.Stat()
	if err != nil {
		return
	}
	const chunk = 64 << 10
	size := fi.Size()
	start := max(size-chunk*4, 0)
	buf := make([]byte, size-start)
	if _, err := f.ReadAt(buf, start); err != nil && err != io.EOF {
		return
	}
	lines := strings.Count(string(buf), "\n")
	skip := lines - n
	off := start
	sc := bufio.NewScanner(strings.NewReader(string(buf)))
	sc.Buffer(make([]byte, chunk), len(buf)+1)
	for i := 0; i < skip && sc.Scan(); i++ {
		off += int64(len(sc.Bytes()) + 1)
	}
	f.Seek(off, io.SeekStart)
}

// vmAgent upgrades the request to a raw tunnel to the VM's agent. The CLI
// then speaks the agent's protocol (exec, files, ports) over it.
func (d *Daemon) vmAgent(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), api.AgentUpgrade) {
		wire.WriteError(w, api.Errorf(api.CodeBadRequest, "want Upgrade: %s", api.AgentUpgrade), wire.OpID(r.Context()))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	conn, err := d.vms.AgentConn(ctx, r.PathValue("name"))
	cancel()
	if err != nil {
		wire.WriteError(w, err, wire.OpID(r.Context()))
		return
	}
	defer conn.Close()
	w.Header().Set("Connection", "Upgrade")
	w.Header().Set("Upgrade", api.AgentUpgrade)
	w.WriteHeader(http.StatusSwitchingProtocols)
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer client.Close()
	done := make(chan struct{}, 2)
	go func() {
		if n := brw.Reader.Buffered(); n > 0 {
			b, _ := brw.Reader.Peek(n)
			conn.Write(b)
			brw.Reader.Discard(n)
		}
		io.Copy(conn, client)
		closeWrite(conn)
		done <- struct{}{}
	}()
	go func() {
		io.Copy(client, conn)
		closeWrite(client)
		done <- struct{}{}
	}()
	<-done
	<-done
}

func closeWrite(c any) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
