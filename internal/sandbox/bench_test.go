package sandbox

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/config"
	"github.com/banger/banger/internal/paths"
	"github.com/banger/banger/internal/state"
	"github.com/banger/banger/internal/vmm"
)

type benchImages map[string]Image

func (b benchImages) Resolve(_ context.Context, name string, _ func(api.Event)) (Image, error) {
	img, ok := b[name]
	if !ok {
		return Image{}, api.Errorf(api.CodeNotFound, "no image %q", name)
	}
	return img, nil
}

type noNet struct{}

func (noNet) EnsureBridge(context.Context) error                  { return nil }
func (noNet) CreateTap(context.Context, string) error             { return nil }
func (noNet) DeleteTap(context.Context, string) error             { return nil }
func (noNet) AddNAT(context.Context, string, netip.Addr) error    { return nil }
func (noNet) RemoveNAT(context.Context, string, netip.Addr) error { return nil }
func (noNet) Name() string                                        { return "none" }
func (noNet) Start(context.Context, vmm.Spec) (*vmm.Machine, error) {
	return nil, fmt.Errorf("no boot in benchmarks")
}
func (noNet) Adopt(vmm.Record) (*vmm.Machine, error) { return nil, vmm.ErrGone }

// writeRandom makes a fully allocated file of random data, so an
// implementation that copied the image would pay for every byte.
func writeRandom(b *testing.B, path string, size int64) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCreateVsImageSize times `vm create --no-start` from a 64 MiB and
// from a 2 GiB image, alternately in the same run, and reports the ratio:
// creating a VM copies nothing of the image, so it should be about 1.
func BenchmarkCreateVsImageSize(b *testing.B) {
	for _, tool := range []string{"mkfs.ext4", "resize2fs", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s not installed", tool)
		}
	}
	dir := b.TempDir()
	seedDir := filepath.Join(dir, "seed-root")
	os.MkdirAll(filepath.Join(seedDir, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(seedDir, ".bashrc"), []byte("# bench\n"), 0o644)
	seed := filepath.Join(dir, "work-seed.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-d", seedDir, seed, "64M").CombinedOutput(); err != nil {
		b.Fatalf("mkfs seed: %v %s", err, out)
	}
	images := benchImages{}
	for name, size := range map[string]int64{"small": 64 << 20, "large": 2 << 30} {
		p := filepath.Join(dir, name+".ext4")
		writeRandom(b, p, size)
		images[name] = Image{Name: name, RootFS: p, WorkSeed: seed, Kernel: "k"}
	}
	l := paths.Layout{StateDir: filepath.Join(dir, "state"), RuntimeDir: filepath.Join(dir, "run")}
	st, err := state.Open(filepath.Join(dir, "records"))
	if err != nil {
		b.Fatal(err)
	}
	cfg := config.Default(config.HostFacts{CPUs: 2, MemoryBytes: 8 << 30}, dir)
	cfg.Network.CIDR = netip.MustParsePrefix("10.99.0.1/16")
	m := New(Config{Layout: l, Config: cfg, Store: st, Images: images, Net: noNet{}, Backend: noNet{},
		Log: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	disk := int64(8 << 30)
	create := func(image string) time.Duration {
		start := time.Now()
		v, err := m.Create(ctx, api.CreateVM{Image: image, DiskBytes: &disk, NoStart: true}, nil)
		took := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Delete(ctx, v.Name); err != nil {
			b.Fatal(err)
		}
		return took
	}
	create("small") // warm caches and binaries
	var small, large time.Duration
	b.ResetTimer()
	for range b.N {
		small += create("small")
		large += create("large")
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(small.Milliseconds())/n, "ms/create-64MiB-image")
	b.ReportMetric(float64(large.Milliseconds())/n, "ms/create-2GiB-image")
	b.ReportMetric(float64(large)/float64(small), "large/small")
}
