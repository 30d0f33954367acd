package wire

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/buildinfo"
)

// serve starts a Server on a temp socket and returns a client for it.
func serve(t *testing.T, h http.Handler, auth Authorizer, serverAPI int) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := Listen(sock, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{Handler: h, Authorize: auth, Version: buildinfo.Info{Version: "v-server", APIVersion: serverAPI}}
	done := make(chan struct{})
	go func() { srv.Serve(ctx, ln, time.Second); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &Client{Socket: sock, Name: "test", Version: buildinfo.Info{Version: "v-client", APIVersion: 1}}
}

func TestErrorsCrossTheSocketAsSentinels(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/err/{code}", func(w http.ResponseWriter, r *http.Request) {
		code := api.Code(r.PathValue("code"))
		err := fmt.Errorf("vm %q: %w", "x", &api.Error{Code: code, Message: "thing went wrong"})
		if code == "plain" {
			err = errors.New("disk full")
		}
		WriteError(w, api.WithHint(err, "do the thing"), OpID(r.Context()))
	})
	c := serve(t, mux, AllowUIDs(uint32(os.Getuid())), 1)
	for _, tc := range []struct {
		code string
		want error
	}{
		{"not_found", api.ErrNotFound},
		{"already_exists", api.ErrAlreadyExists},
		{"bad_request", api.ErrBadRequest},
		{"conflict", api.ErrConflict},
		{"unavailable", api.ErrUnavailable},
		{"plain", api.ErrOperationFault},
	} {
		err := c.Call(t.Context(), "GET", "/err/"+tc.code, nil, nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want errors.Is %v", tc.code, err, tc.want)
		}
		for _, other := range []error{api.ErrNotFound, api.ErrConflict} {
			if other != tc.want && errors.Is(err, other) {
				t.Errorf("%s: also matches %v", tc.code, other)
			}
		}
		if api.HintOf(err) != "do the thing" {
			t.Errorf("%s: hint lost: %q", tc.code, api.HintOf(err))
		}
		var ae *api.Error
		if !errors.As(err, &ae) || ae.OpID == "" {
			t.Errorf("%s: op id lost: %+v", tc.code, ae)
		}
	}
	if v, ok := c.ServerVersion(); !ok || v.Version != "v-server" {
		t.Errorf("server version = %+v", v)
	}
}

func TestAPIVersionMismatchIsBadVersion(t *testing.T) {
	c := serve(t, http.NotFoundHandler(), nil, 2)
	err := c.Call(t.Context(), "GET", "/", nil, nil)
	if !errors.Is(err, api.ErrBadVersion) || !strings.Contains(err.Error(), "API v1") {
		t.Fatalf("got %v, want bad_version naming both versions", err)
	}
}

func TestUnauthorizedPeer(t *testing.T) {
	c := serve(t, http.NotFoundHandler(), AllowUIDs(uint32(os.Getuid())+12345), 1)
	err := c.Call(t.Context(), "GET", "/", nil, nil)
	if !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("got %v, want unauthorized", err)
	}
}

func TestNobodyListening(t *testing.T) {
	c := &Client{Socket: filepath.Join(t.TempDir(), "none.sock"), Name: "bangerd", DownHint: "start it"}
	err := c.Call(t.Context(), "GET", "/", nil, nil)
	if !errors.Is(err, api.ErrUnavailable) || api.HintOf(err) != "start it" || !strings.Contains(err.Error(), "bangerd is not running") {
		t.Fatalf("got %v (hint %q)", err, api.HintOf(err))
	}
}

func TestStreamDeliversProgressThenResult(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/op/{ok}", func(w http.ResponseWriter, r *http.Request) {
		s := NewStream(w)
		s.Progress("build", "step 1", 1, 2)
		s.Progress("build", "step 2", 2, 2)
		if r.PathValue("ok") == "yes" {
			s.Finish(r.Context(), map[string]int{"answer": 42}, nil)
		} else {
			s.Finish(r.Context(), nil, fmt.Errorf("boot: %w", api.ErrConflict))
		}
	})
	c := serve(t, mux, nil, 1)
	var stages []string
	var out struct{ Answer int }
	err := c.Stream(t.Context(), "POST", "/op/yes", nil, func(ev api.Event) { stages = append(stages, ev.Message) }, &out)
	if err != nil || out.Answer != 42 || strings.Join(stages, ",") != "step 1,step 2" {
		t.Fatalf("stream: err %v out %+v stages %v", err, out, stages)
	}
	err = c.Stream(t.Context(), "POST", "/op/no", nil, nil, nil)
	if !errors.Is(err, api.ErrConflict) {
		t.Fatalf("stream error = %v, want conflict", err)
	}
}

func TestListenRefusesNonSocketAndLiveServer(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := Listen(f, 0o600, -1, -1); err == nil {
		t.Error("Listen replaced a regular file")
	}
	c := serve(t, http.NotFoundHandler(), nil, 1)
	if _, err := Listen(c.Socket, 0o600, -1, -1); err == nil || !strings.Contains(err.Error(), "already answering") {
		t.Errorf("Listen over a live server = %v", err)
	}
}
