package kernel

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/banger/banger/internal/api"
)

// Upload formats: how the CLI sends a kernel to the daemon, which may not
// be able to read the user's files.
const (
	// UploadDeb is a Debian kernel package, as is.
	UploadDeb = "deb"
	// UploadFiles is a tar holding "kernel" (a bzImage or ELF vmlinux), an
	// optional "config" and an optional "modules/<version>/" tree (the
	// kernel's lib/modules/<version>).
	UploadFiles = "files"
)

// MaxUpload bounds what an upload may write to disk.
const MaxUpload = 4 << 30

// Names inside an UploadFiles archive.
const (
	uploadKernel  = "kernel"
	uploadConfig  = "config"
	uploadModules = "modules"
)

// ImportUpload imports a kernel sent as body in format (UploadDeb or
// UploadFiles) as name. The body is received into a hidden directory of
// the store, imported from there and removed. source is recorded as the
// kernel's origin (the user's file name). progress, if not nil, hears of
// the stages once the body has been received.
func (s *Store) ImportUpload(ctx context.Context, name, format string, body io.Reader, source string, progress func(stage, msg string)) (Kernel, error) {
	if format != UploadDeb && format != UploadFiles {
		return Kernel{}, api.WithHint(api.Errorf(api.CodeBadRequest, "unknown kernel upload format %q", format),
			"use format=deb (a linux-image .deb) or format=files (a tar of kernel, config, modules/)")
	}
	if progress == nil {
		progress = func(string, string) {}
	}
	return s.create(ctx, name, func(ctx context.Context, dest string) (Kernel, error) {
		up, err := os.MkdirTemp(s.dir, "."+name+uploadInfix)
		if err != nil {
			return Kernel{}, err
		}
		defer os.RemoveAll(up)
		body := &limitedReader{r: ctxReader{ctx, body}, left: MaxUpload}
		var stage func(ctx context.Context, tmp string) (staged, error)
		switch format {
		case UploadDeb:
			deb := filepath.Join(up, "kernel.deb")
			if err := receiveFile(body, deb); err != nil {
				return Kernel{}, err
			}
			stage = func(ctx context.Context, tmp string) (staged, error) { return stageDeb(ctx, deb, tmp) }
		case UploadFiles:
			modules, err := receiveFiles(body, up)
			if err != nil {
				return Kernel{}, err
			}
			stage = func(ctx context.Context, tmp string) (staged, error) {
				return stageFiles(ctx, filepath.Join(up, uploadKernel), modules, tmp)
			}
		}
		progress("import kernel", fmt.Sprintf("received %d MiB", (MaxUpload-body.left)>>20))
		return install(ctx, dest, func(ctx context.Context, tmp string) (staged, error) {
			st, err := stage(ctx, tmp)
			st.source = source
			return st, err
		})
	})
}

type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, api.Errorf(api.CodeBadRequest, "kernel upload is larger than %d GiB", MaxUpload>>30)
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

func receiveFile(r io.Reader, dst string) error {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("receive upload: %w", err)
	}
	return nil
}

// receiveFiles unpacks an UploadFiles tar into dir and returns the modules
// directory it held ("" for none). A "config" becomes ".config" beside the
// kernel, where stageFiles looks for it.
func receiveFiles(r io.Reader, dir string) (modulesDir string, err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	tr := tar.NewReader(bufio.NewReaderSize(r, 1<<20))
	var version string
	haveKernel := false
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", api.Errorf(api.CodeBadRequest, "kernel upload: not a valid tar: %v", err)
		}
		name, err := cleanEntryName(hdr.Name)
		if err != nil {
			return "", badUpload(err)
		}
		switch {
		case name == uploadKernel || name == uploadConfig:
			if hdr.Typeflag != tar.TypeReg {
				return "", badUpload(fmt.Errorf("%q is not a regular file", hdr.Name))
			}
			target := uploadKernel
			if name == uploadConfig {
				target = ".config"
			} else {
				haveKernel = true
			}
			if err := writeEntry(root, target, tr, 0o644); err != nil {
				return "", err
			}
		case name == uploadModules:
			if hdr.Typeflag != tar.TypeDir {
				return "", badUpload(fmt.Errorf("%q is not a directory", hdr.Name))
			}
		case strings.HasPrefix(name, uploadModules+"/"):
			rel := strings.TrimPrefix(name, uploadModules+"/")
			v, inner, _ := strings.Cut(rel, "/")
			if !validVersion(v) {
				return "", badUpload(fmt.Errorf("%q: modules/ must hold one directory named by the kernel version", hdr.Name))
			}
			if version != "" && version != v {
				return "", badUpload(fmt.Errorf("modules for two kernels: %s and %s", version, v))
			}
			version = v
			linkTarget := ""
			if hdr.Typeflag == tar.TypeLink {
				ln, err := cleanEntryName(hdr.Linkname)
				if err != nil {
					return "", badUpload(err)
				}
				if !strings.HasPrefix(ln, uploadModules+"/"+v+"/") {
					return "", badUpload(fmt.Errorf("%q: hard link to %s outside the modules tree", hdr.Name, hdr.Linkname))
				}
				linkTarget = ln
			}
			if err := putTreeEntry(root, path.Join(uploadModules, v, inner), inner, hdr, tr, linkTarget); err != nil {
				return "", badUpload(err)
			}
		default:
			return "", badUpload(fmt.Errorf("unexpected entry %q (want kernel, config, modules/<version>/...)", hdr.Name))
		}
	}
	if !haveKernel {
		return "", badUpload(errors.New("no kernel file in the archive"))
	}
	if version == "" {
		return "", nil
	}
	return filepath.Join(dir, uploadModules, version), nil
}

func badUpload(err error) error {
	return api.Errorf(api.CodeBadRequest, "kernel upload: %v", err)
}
