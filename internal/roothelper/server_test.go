package roothelper

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/wire"
	"github.com/google/go-cmp/cmp"
)

// Every request here is refused before any operation runs, so the handler
// never reaches the network and the test needs no privilege.
func TestHandlerRejects(t *testing.T) {
	s, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     api.Code
		msg                      string
	}{
		{"unknown field bridge", "POST", RouteBridgeEnsure, `{"name":"banger-t0","mtu":9000}`, 400, api.CodeBadRequest, "unknown field"},
		{"unknown field tap", "POST", RouteTapCreate, `{"name":"bgtap1","owner":0}`, 400, api.CodeBadRequest, "unknown field"},
		{"unknown field nat", "POST", RouteNATAdd, `{"tap":"bgtap1","guest_ip":"172.16.0.2","iface":"eth0"}`, 400, api.CodeBadRequest, "unknown field"},
		{"unknown field status", "GET", RouteStatus, `{"verbose":true}`, 400, api.CodeBadRequest, "unknown field"},
		{"not json", "POST", RouteTapCreate, `name=bgtap1`, 400, api.CodeBadRequest, "bad request body"},
		{"wrong type", "POST", RouteTapCreate, `{"name":["bgtap1"]}`, 400, api.CodeBadRequest, "bad request body"},
		{"bad ip", "POST", RouteNATAdd, `{"tap":"bgtap1","guest_ip":"172.16.0.300"}`, 400, api.CodeBadRequest, "bad request body"},
		{"ip with port", "POST", RouteNATRemove, `{"tap":"bgtap1","guest_ip":"172.16.0.2:22"}`, 400, api.CodeBadRequest, "bad request body"},
		{"empty body", "POST", RouteTapCreate, ``, 400, api.CodeBadRequest, "not a banger tap name"},
		{"hostile tap", "POST", RouteTapCreate, `{"name":"eth0"}`, 400, api.CodeBadRequest, "not a banger tap name"},
		{"hostile tap delete", "POST", RouteTapDelete, `{"name":"bgtap1/../eth0"}`, 400, api.CodeBadRequest, "not a banger tap name"},
		{"other bridge", "POST", RouteBridgeEnsure, `{"name":"banger9"}`, 400, api.CodeBadRequest, "not the configured bridge"},
		{"hostile bridge delete", "POST", RouteBridgeDelete, `{"name":"docker0"}`, 400, api.CodeBadRequest, "not a banger bridge name"},
		{"nat outside subnet", "POST", RouteNATAdd, `{"tap":"bgtap1","guest_ip":"10.0.0.2"}`, 400, api.CodeBadRequest, "outside"},
		{"nat bridge address", "POST", RouteNATAdd, `{"tap":"bgtap1","guest_ip":"172.16.0.1"}`, 400, api.CodeBadRequest, "bridge's own"},
		{"nat ipv6", "POST", RouteNATRemove, `{"tap":"bgtap1","guest_ip":"fd00::2"}`, 400, api.CodeBadRequest, "IPv4"},
		{"nat bad tap", "POST", RouteNATAdd, `{"tap":"eth0","guest_ip":"172.16.0.2"}`, 400, api.CodeBadRequest, "not a banger tap name"},
		{"wrong method", "GET", RouteTapCreate, ``, 405, api.CodeUnknownMethod, "no GET"},
		{"status by post", "POST", RouteStatus, `{}`, 405, api.CodeUnknownMethod, "no POST"},
		{"unknown route", "POST", "/v1/exec", `{"argv":["sh"]}`, 405, api.CodeUnknownMethod, "no POST /v1/exec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Errorf("status %d, want %d (body %s)", rec.Code, tt.status, rec.Body)
			}
			var e api.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if e.Code != tt.code || !strings.Contains(e.Message, tt.msg) {
				t.Errorf("got %s %q, want %s containing %q", e.Code, e.Message, tt.code, tt.msg)
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	s, err := New(testConfig(t)) // owner 4242:4243
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tt := range []struct {
		uid, gid uint32
		ok       bool
	}{
		{0, 0, true},
		{4242, 4243, true},
		{4242, 0, true},
		{4243, 4243, false}, // the owner's gid is no uid of ours
		{1, 0, false},
		{65534, 65534, false},
		{1000, 4243, false},
	} {
		err := s.Authorize(wire.Peer{PID: 1, UID: tt.uid, GID: tt.gid})
		if (err == nil) != tt.ok {
			t.Errorf("uid %d gid %d: %v, want ok=%v", tt.uid, tt.gid, err, tt.ok)
		}
		if err != nil && !errors.Is(err, api.ErrUnauthorized) {
			t.Errorf("uid %d: error %v is not unauthorized", tt.uid, err)
		}
	}
}

// TestSocketPeerCredentials serves on a real socket and calls it as root,
// as the owner and as a stranger, from real processes: the refusal must
// come from SO_PEERCRED, so the socket is opened up to everyone here.
func TestSocketPeerCredentials(t *testing.T) {
	prereq(t, os.Geteuid() == 0, "needs root to run clients as other users")
	cfg := testConfig(t)
	base := filepath.Dir(cfg.Layout.HelperDir)
	// The children must reach the socket and their own binary.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	logs := &lockedWriter{}
	cfg.Log = slog.New(slog.NewJSONHandler(logs, nil))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := cfg.Layout.HelperSocket()
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o600 || int(st.Uid) != cfg.OwnerUID || int(st.Gid) != cfg.OwnerGID {
		t.Errorf("socket %v owned by %d:%d, want -rw------- %d:%d", fi.Mode(), st.Uid, st.Gid, cfg.OwnerUID, cfg.OwnerGID)
	}
	if di, err := os.Stat(cfg.Layout.HelperDir); err != nil || di.Mode().Perm() != 0o711 {
		t.Errorf("helper dir: %v %v, want 0711", di.Mode(), err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, time.Second) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	bin := filepath.Join(base, "roothelper.test")
	copyExecutable(t, bin)

	// In-process, as root.
	_, err = NewClient(sock).CreateTap(t.Context(), "evil/x")
	if got := api.CodeOf(err); got != api.CodeBadRequest {
		t.Errorf("root: %v, want bad_request", err)
	}
	for _, tt := range []struct {
		name     string
		uid, gid uint32
		want     string
	}{
		{"owner", 4242, 4243, `bad_request tap name "evil/x" is not a banger tap name`},
		// The server's words, not the client's EACCES: the socket was open
		// to all, so SO_PEERCRED did the refusing.
		{"stranger", 65534, 65534, "unauthorized uid 65534 may not use this socket"},
		{"owner's group, other uid", 4244, 4243, "unauthorized uid 4244 may not use this socket"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), bin)
			cmd.Env = []string{envChild + "=call", "BANGER_TEST_SOCKET=" + sock}
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: tt.uid, Gid: tt.gid, Groups: []uint32{}}}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v: %s", err, out)
			}
			if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, tt.want) {
				t.Errorf("as uid %d: %q, want it to start with %q", tt.uid, got, tt.want)
			}
		})
	}

	// One line per operation that reached the helper, with op id, uid and
	// arguments; the stranger never got that far.
	var got []string
	for _, r := range logs.records(t, "tap.create") {
		if r["op_id"] == "" || r["op_id"] == nil {
			t.Errorf("log line without op_id: %v", r)
		}
		got = append(got, r["level"].(string)+" uid="+jsonNum(r["uid"])+" name="+r["name"].(string))
	}
	want := []string{"WARN uid=0 name=evil/x", "WARN uid=4242 name=evil/x"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tap.create log lines (-want +got):\n%s", diff)
	}
	if n := len(logs.records(t, "refused caller")); n != 2 {
		t.Errorf("%d refused-caller log lines, want 2", n)
	}
}

func jsonNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// copyExecutable puts a copy of the test binary where other users can run it.
func copyExecutable(t *testing.T, dst string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
