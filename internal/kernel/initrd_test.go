package kernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeInitramfs records builds and writes "<kernel> <agent content>".
type fakeInitramfs struct {
	calls atomic.Int32
	fail  atomic.Bool
}

func (f *fakeInitramfs) build(ctx context.Context, k Kernel, agent string, w io.Writer) error {
	f.calls.Add(1)
	time.Sleep(20 * time.Millisecond) // widen the window for concurrent callers
	data, err := os.ReadFile(agent)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "%s %s", k.Name, data); err != nil {
		return err
	}
	if f.fail.Load() {
		return errors.New("module virtio_blk: not found")
	}
	return nil
}

func writeAgent(t *testing.T, path, content string) {
	t.Helper()
	// Replaced by rename, as an install does: a new inode.
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func initrds(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, e := range entries(t, dir) {
		if strings.Contains(e, "initrd") {
			out = append(out, e)
		}
	}
	return out
}

func TestInitramfsCache(t *testing.T) {
	fake := &fakeInitramfs{}
	s := newTestStore(t, StoreConfig{BuildInitramfs: fake.build})
	ctx := t.Context()
	k, err := s.ImportFiles(ctx, "k", elfKernel(t), "")
	if err != nil {
		t.Fatal(err)
	}
	agent := filepath.Join(t.TempDir(), "banger-agent")
	writeAgent(t, agent, "agent v1")

	// Concurrent first callers build once.
	const n = 5
	got := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { got[i], errs[i] = s.Initramfs(ctx, k, agent) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || got[i] != got[0] {
			t.Fatalf("caller %d: %q, %v; caller 0 got %q", i, got[i], errs[i], got[0])
		}
	}
	if c := fake.calls.Load(); c != 1 {
		t.Errorf("%d builds for %d concurrent callers, want 1", c, n)
	}
	first := got[0]
	if !strings.HasPrefix(filepath.Base(first), "initrd-") || len(filepath.Base(first)) != len("initrd-0123456789abcdef.img") {
		t.Errorf("initramfs name %s", first)
	}
	if data, _ := os.ReadFile(first); string(data) != "k agent v1" {
		t.Errorf("initramfs holds %q", data)
	}

	// Cached: no build.
	again, err := s.Initramfs(ctx, k, agent)
	if err != nil || again != first || fake.calls.Load() != 1 {
		t.Errorf("second call: %s, %v, %d builds", again, err, fake.calls.Load())
	}

	// Another agent: another file, the old one goes.
	writeAgent(t, agent, "agent v2")
	second, err := s.Initramfs(ctx, k, agent)
	if err != nil {
		t.Fatal(err)
	}
	if second == first || fake.calls.Load() != 2 {
		t.Errorf("new agent: %s (first %s), %d builds", second, first, fake.calls.Load())
	}
	if diff := cmp.Diff([]string{filepath.Base(second)}, initrds(t, k.Dir)); diff != "" {
		t.Errorf("initramfs files (-want +got):\n%s", diff)
	}

	// Same content as before under a new inode: the key is the content.
	writeAgent(t, agent, "agent v1")
	back, err := s.Initramfs(ctx, k, agent)
	if err != nil || filepath.Base(back) != filepath.Base(first) {
		t.Errorf("agent v1 again: %s, %v; want %s", back, err, first)
	}

	// A failed build leaves nothing, not even its temp file.
	writeAgent(t, agent, "agent v3")
	fake.fail.Store(true)
	if _, err := s.Initramfs(ctx, k, agent); err == nil || !strings.Contains(err.Error(), "virtio_blk") {
		t.Errorf("failing build: %v", err)
	}
	if diff := cmp.Diff([]string{filepath.Base(back)}, initrds(t, k.Dir)); diff != "" {
		t.Errorf("after a failed build (-want +got):\n%s", diff)
	}
}

func TestInitramfsRefuses(t *testing.T) {
	s := newTestStore(t, StoreConfig{})
	k, err := s.ImportFiles(t.Context(), "k", elfKernel(t), "")
	if err != nil {
		t.Fatal(err)
	}
	agent := filepath.Join(t.TempDir(), "banger-agent")
	writeAgent(t, agent, "a")
	for _, tt := range []struct {
		name  string
		k     Kernel
		agent string
		err   string
	}{
		{"no builder", k, agent, "no initramfs builder"},
		{"foreign kernel", Kernel{Name: "x", Dir: t.TempDir()}, agent, "not a kernel of this store"},
		{"missing agent", k, filepath.Join(t.TempDir(), "none"), "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Initramfs(t.Context(), tt.k, tt.agent)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("error %v, want one containing %q", err, tt.err)
			}
		})
	}
}
