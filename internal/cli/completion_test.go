package cli

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/banger/banger/internal/buildinfo"
	"github.com/banger/banger/internal/paths"
	"github.com/banger/banger/internal/wire"
	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
)

func testApp(t *testing.T) *App {
	dir := t.TempDir()
	return &App{In: &bytes.Buffer{}, Out: &bytes.Buffer{}, Err: &bytes.Buffer{}, Home: dir,
		Layout: paths.Layout{RuntimeDir: dir, StateDir: dir, EtcDir: dir}}
}

func TestCompleteNamesIsSilentWhenDaemonIsDown(t *testing.T) {
	a := testApp(t)
	got, dir := a.completeNames("vm")(&cobra.Command{}, nil, "")
	if len(got) != 0 || dir != cobra.ShellCompDirectiveNoFileComp {
		t.Fatalf("got %v, %v; want nothing and no file completion", got, dir)
	}
}

func TestCompleteNamesFromDaemon(t *testing.T) {
	a := testApp(t)
	ln, err := wire.Listen(filepath.Join(a.Layout.RuntimeDir, "bangerd.sock"), 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/names/vm", func(w http.ResponseWriter, r *http.Request) {
		wire.WriteJSON(w, 200, map[string][]string{"names": {"alpha", "beta", "alps"}})
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&wire.Server{Handler: mux, Version: buildinfo.Get()}).Serve(ctx, ln, time.Second)
	got, _ := a.completeNames("vm")(&cobra.Command{}, []string{"alps"}, "al")
	if diff := cmp.Diff([]cobra.Completion{"alpha"}, got); diff != "" {
		t.Errorf("completion (-want +got):\n%s", diff)
	}
}

func TestErrorsPrintOneLineWithHint(t *testing.T) {
	a := testApp(t)
	code := a.Run(context.Background(), []string{"system", "status"})
	if code != 1 {
		t.Errorf("exit %d, want 1 with no daemon", code)
	}
	out := a.Out.(*bytes.Buffer).String()
	if !bytes.Contains([]byte(out), []byte("unreachable")) {
		t.Errorf("status output: %s", out)
	}
}
