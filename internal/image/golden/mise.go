package golden

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// miseMember is where the binary sits inside the npm tarball.
const miseMember = "package/bin/mise"

// miseFetcher obtains the pinned mise tarball through npm, which uses
// whatever registry the host's npm is configured for.
type miseFetcher struct {
	run      runner
	npm      string // path to npm
	scratch  string // emptied by the caller
	cacheDir string // keeps the verified tarball between builds; optional
}

// fetch returns the path of a tarball whose sha256 equals pin.SHA256.
func (f miseFetcher) fetch(ctx context.Context, pin MisePin) (string, error) {
	spec := pin.Package + "@" + pin.Version
	cached := ""
	if f.cacheDir != "" {
		cached = filepath.Join(f.cacheDir, tarballName(pin))
		sum, _, err := fileSums(cached)
		switch {
		case err == nil && sum == pin.SHA256:
			return cached, nil
		case err == nil:
			// A corrupt or foreign file: fetch again rather than fail forever.
			if err := os.Remove(cached); err != nil {
				return "", fmt.Errorf("mise %s: remove stale cache file: %w", spec, err)
			}
		case !errors.Is(err, os.ErrNotExist):
			return "", fmt.Errorf("mise %s: %w", spec, err)
		}
	}

	npmCache := filepath.Join(f.scratch, "npm-cache")
	common := []string{"--cache", npmCache, "--no-fund", "--no-audit", "--no-update-notifier"}

	// The registry's own record of the tarball, checked against what pack
	// delivers; the pinned sha256 is what decides.
	out, err := f.run.output(ctx, command{
		argv: append([]string{f.npm, "view", spec, "dist.integrity", "--json"}, common...),
		dir:  f.scratch,
	})
	if err != nil {
		return "", fmt.Errorf("mise %s: %w", spec, err)
	}
	var integrity string
	if err := json.Unmarshal(out, &integrity); err != nil {
		return "", fmt.Errorf("mise %s: npm view dist.integrity: %w: %q", spec, err, truncate(out))
	}

	out, err = f.run.output(ctx, command{
		argv: append([]string{f.npm, "pack", spec, "--json", "--ignore-scripts"}, common...),
		dir:  f.scratch,
	})
	if err != nil {
		return "", fmt.Errorf("mise %s: %w", spec, err)
	}
	var packed []struct {
		Filename string `json:"filename"`
	}
	if err := json.Unmarshal(out, &packed); err != nil || len(packed) != 1 || packed[0].Filename == "" {
		return "", fmt.Errorf("mise %s: unexpected npm pack output: %q", spec, truncate(out))
	}
	if packed[0].Filename != filepath.Base(packed[0].Filename) {
		return "", fmt.Errorf("mise %s: npm pack named a file outside its directory: %q", spec, packed[0].Filename)
	}
	tgz := filepath.Join(f.scratch, packed[0].Filename)

	sum256, sum512, err := fileSums(tgz)
	if err != nil {
		return "", fmt.Errorf("mise %s: %w", spec, err)
	}
	if want, ok := sha512Of(integrity); !ok {
		return "", fmt.Errorf("mise %s: registry integrity %q has no sha512", spec, integrity)
	} else if want != sum512 {
		return "", fmt.Errorf("mise %s: tarball sha512 %s does not match the registry's %s", spec, sum512, want)
	}
	if sum256 != pin.SHA256 {
		return "", fmt.Errorf("mise %s: tarball sha256 %s does not match the pinned %s; refusing to install it", spec, sum256, pin.SHA256)
	}

	if cached == "" {
		return tgz, nil
	}
	if err := os.MkdirAll(f.cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("mise %s: %w", spec, err)
	}
	// The cache may sit on another filesystem than the scratch dir: copy to a
	// temp file beside the target and rename, so no reader sees half a file.
	if err := copyFileAtomic(tgz, cached, 0o644); err != nil {
		return "", fmt.Errorf("mise %s: cache tarball: %w", spec, err)
	}
	return cached, nil
}

func tarballName(pin MisePin) string {
	name := strings.NewReplacer("@", "", "/", "-").Replace(pin.Package)
	return name + "-" + pin.Version + ".tgz"
}

// sha512Of returns the hex sha512 in a subresource-integrity string.
func sha512Of(integrity string) (string, bool) {
	for _, h := range strings.Fields(integrity) {
		b64, ok := strings.CutPrefix(h, "sha512-")
		if !ok {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(raw) != sha512.Size {
			return "", false
		}
		return hex.EncodeToString(raw), true
	}
	return "", false
}

func fileSums(path string) (sha256hex, sha512hex string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	h256, h512 := sha256.New(), sha512.New()
	if _, err := io.Copy(io.MultiWriter(h256, h512), f); err != nil {
		return "", "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h256.Sum(nil)), hex.EncodeToString(h512.Sum(nil)), nil
}

// extractMise writes the binary from a verified tarball to dst, mode 0755.
func extractMise(tgz, dst string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", tgz, err)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s: no %s in the tarball", tgz, miseMember)
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", tgz, err)
		}
		if hdr.Name != miseMember {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("read %s: %s is not a regular file", tgz, miseMember)
		}
		return writeFileAtomic(dst, 0o755, func(w io.Writer) error {
			_, err := io.Copy(w, tr)
			return err
		})
	}
}

func truncate(b []byte) string {
	const max = 512
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
