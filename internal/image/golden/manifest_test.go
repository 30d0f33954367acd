package golden

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestManifestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	want := Manifest{
		Name:         "debian-bookworm",
		Suite:        "bookworm",
		SpecDigest:   DefaultSpec().Digest(),
		BuildSeconds: 113.2,
		Stages:       []StageTime{{StageDebootstrap, 28.0}, {StageInstall, 73.0}},
		Sizes:        Sizes{Content: 773103616, Rootfs: 1235222528, RootfsUsed: 774262784, WorkSeed: 64 << 20, WorkSeedUsed: 9744384, KernelAndModules: 109838336},
		Kernel:       "6.1.0-50-cloud-amd64",
		Packages:     map[string]string{"git": "1:2.39.5-0+deb12u3", "docker.io": "20.10.24+dfsg1-1+deb12u1+b6"},
		Mise:         MiseInfo{Version: "2026.9.15", TarballSHA256: DefaultSpec().Mise.SHA256, BinarySHA256: "00"},
		Created:      time.Date(2026, 11, 29, 19, 48, 0, 0, time.UTC),
	}
	if err := writeManifest(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if _, err := ReadManifest(t.TempDir()); err == nil {
		t.Error("ReadManifest of an empty dir succeeded")
	}
}
