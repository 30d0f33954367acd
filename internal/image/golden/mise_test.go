package golden

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// npmTarball builds a package tarball shaped like the real one.
func npmTarball(t *testing.T, binary string) (path, sum256, integrity string) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range []struct{ name, body string }{
		{"package/package.json", `{"name":"@jdxcode/mise-linux-x64"}`},
		{miseMember, binary},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o755, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f.body))
	}
	tw.Close()
	zw.Close()
	path = filepath.Join(t.TempDir(), "upstream.tgz")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	s256 := sha256.Sum256(buf.Bytes())
	s512 := sha512.Sum512(buf.Bytes())
	return path, hex.EncodeToString(s256[:]), "sha512-" + base64.StdEncoding.EncodeToString(s512[:])
}

type miseEnv struct {
	fetcher miseFetcher
	pin     MisePin
	log     string
}

func newMiseEnv(t *testing.T, tgz, integrity, pinSHA string) miseEnv {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "calls")
	t.Setenv("GOLDEN_FAKE_NPM", "1")
	t.Setenv("GOLDEN_FAKE_LOG", log)
	t.Setenv("GOLDEN_FAKE_NPM_TGZ", tgz)
	t.Setenv("GOLDEN_FAKE_NPM_INTEGRITY", integrity)
	return miseEnv{
		fetcher: miseFetcher{npm: self, scratch: t.TempDir(), cacheDir: filepath.Join(t.TempDir(), "mise")},
		pin:     MisePin{Package: "@jdxcode/mise-linux-x64", Version: "1.2.3", SHA256: pinSHA},
		log:     log,
	}
}

func (e miseEnv) calls(t *testing.T) string {
	b, err := os.ReadFile(e.log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func TestMiseFetchVerifiesAndCaches(t *testing.T) {
	tgz, sum, integrity := npmTarball(t, "#!mise\n")
	e := newMiseEnv(t, tgz, integrity, sum)

	got, err := e.fetcher.fetch(t.Context(), e.pin)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(e.fetcher.cacheDir, "jdxcode-mise-linux-x64-1.2.3.tgz"); got != want {
		t.Errorf("fetch = %s, want the cached copy %s", got, want)
	}
	dst := filepath.Join(t.TempDir(), "mise")
	if err := extractMise(got, dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "#!mise\n" {
		t.Errorf("extracted %q", b)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %s, want 0755", fi.Mode())
	}

	// The second build is served from the cache, without npm.
	if _, err := e.fetcher.fetch(t.Context(), e.pin); err != nil {
		t.Fatal(err)
	}
	want := "view @jdxcode/mise-linux-x64@1.2.3\npack @jdxcode/mise-linux-x64@1.2.3\n"
	if diff := cmp.Diff(want, e.calls(t)); diff != "" {
		t.Errorf("npm calls (-want +got):\n%s", diff)
	}

	// A damaged cache file is replaced, not trusted.
	if err := os.WriteFile(got, []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.fetcher.fetch(t.Context(), e.pin); err != nil {
		t.Fatal(err)
	}
	if s, _, _ := fileSums(got); s != sum {
		t.Errorf("cache not repaired: sha256 %s", s)
	}
	if n := strings.Count(e.calls(t), "pack "); n != 2 {
		t.Errorf("pack ran %d times, want 2", n)
	}
}

func TestMiseFetchRejectsPinMismatch(t *testing.T) {
	tgz, _, integrity := npmTarball(t, "#!evil\n")
	e := newMiseEnv(t, tgz, integrity, strings.Repeat("ab", 32))
	_, err := e.fetcher.fetch(t.Context(), e.pin)
	if err == nil || !strings.Contains(err.Error(), "does not match the pinned "+strings.Repeat("ab", 32)) {
		t.Fatalf("err = %v, want a pinned sha256 mismatch", err)
	}
	if entries, _ := os.ReadDir(e.fetcher.cacheDir); len(entries) != 0 {
		t.Errorf("rejected tarball was cached: %v", entries)
	}
}

func TestMiseFetchRejectsRegistryMismatch(t *testing.T) {
	tgz, sum, _ := npmTarball(t, "#!mise\n")
	_, _, otherIntegrity := npmTarball(t, "#!other\n")
	e := newMiseEnv(t, tgz, otherIntegrity, sum)
	if _, err := e.fetcher.fetch(t.Context(), e.pin); err == nil || !strings.Contains(err.Error(), "registry") {
		t.Fatalf("err = %v, want a registry sha512 mismatch", err)
	}
	e = newMiseEnv(t, tgz, "sha1-AAAA", sum)
	if _, err := e.fetcher.fetch(t.Context(), e.pin); err == nil || !strings.Contains(err.Error(), "no sha512") {
		t.Fatalf("err = %v, want missing sha512", err)
	}
}

func TestMiseFetchReportsNPMFailure(t *testing.T) {
	e := newMiseEnv(t, filepath.Join(t.TempDir(), "absent.tgz"), "sha512-x", strings.Repeat("0", 64))
	_, err := e.fetcher.fetch(t.Context(), e.pin)
	if err == nil || !strings.Contains(err.Error(), "pack") || !strings.Contains(err.Error(), "404 Not Found") {
		t.Fatalf("err = %v, want the npm argv and its output", err)
	}
}

func TestExtractMiseMissingMember(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "package/README.md", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	zw.Close()
	tgz := filepath.Join(t.TempDir(), "x.tgz")
	os.WriteFile(tgz, buf.Bytes(), 0o644)
	if err := extractMise(tgz, filepath.Join(t.TempDir(), "mise")); err == nil {
		t.Fatal("extracted from a tarball without the binary")
	}
}
