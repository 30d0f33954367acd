package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"syscall"
	"time"
)

// trailerError carries an error that happened after a tar stream started.
const trailerError = "Banger-Error"

func (a *Agent) handlePutFiles(w http.ResponseWriter, r *http.Request) {
	dir, err := a.guestPath(r.URL.Query().Get("path"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	res, err := extract(dir, r.Body)
	if err != nil {
		a.writeError(w, r, fmt.Errorf("extract into %s: %w", r.URL.Query().Get("path"), err))
		return
	}
	a.log.Info("files copied in", "path", r.URL.Query().Get("path"), "entries", res.Entries, "bytes", res.Bytes)
	writeJSON(w, http.StatusOK, res)
}

func (a *Agent) handleGetFiles(w http.ResponseWriter, r *http.Request) {
	guest := r.URL.Query().Get("path")
	p, err := a.guestPath(guest)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	// The requested path itself is followed (/etc/resolv.conf is often a
	// symlink); nothing below it is.
	top, err := filepath.EvalSymlinks(p)
	if err == nil {
		_, err = os.Lstat(top)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = &Error{Code: CodeNotFound, Message: fmt.Sprintf("%s does not exist", guest)}
		}
		a.writeError(w, r, err)
		return
	}
	name := path.Base(filepath.ToSlash(filepath.Clean(guest)))
	if name == "/" {
		name = "."
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Trailer", trailerError)
	w.WriteHeader(http.StatusOK)
	if err := archive(r.Context(), w, top, name); err != nil {
		a.log.Warn("archive failed", "path", guest, "err", err)
		w.Header().Set(trailerError, err.Error())
	}
}

// archive writes the tree at top as a tar stream whose entries start with
// name. Symlinks are stored as symlinks; files with several links inside
// the tree are stored once and then as hard links.
func archive(ctx context.Context, w io.Writer, top, name string) error {
	tw := tar.NewWriter(w)
	type inode struct{ dev, ino uint64 }
	seen := map[inode]string{}
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(top, p)
		if err != nil {
			return err
		}
		entry := path.Join(name, filepath.ToSlash(rel))
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			return nil // tar cannot carry sockets
		}
		var link string
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		h.Name = entry
		if fi.IsDir() {
			h.Name += "/"
		}
		// Numeric ids only: names would be mapped through the reader's
		// passwd, which is not the guest's.
		h.Uname, h.Gname = "", ""
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
			key := inode{uint64(st.Dev), st.Ino}
			if first, ok := seen[key]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				seen[key] = entry
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg || h.Size == 0 {
			return nil
		}
		f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, h.Size); err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// CopyTo extracts the tar stream into guestDir (created if missing).
func (c *Client) CopyTo(ctx context.Context, tarStream io.Reader, guestDir string) (CopyResult, error) {
	req, err := c.request(ctx, http.MethodPut, "/v1/files", url.Values{"path": {guestDir}}, tarStream)
	if err != nil {
		return CopyResult{}, err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	var res CopyResult
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return CopyResult{}, fmt.Errorf("copy to guest %s: %w", guestDir, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return CopyResult{}, fmt.Errorf("copy to guest %s: %w", guestDir, err)
	}
	return res, nil
}

// CopyFrom streams guestPath (a file or a whole directory) as tar. A
// failure in the middle of the stream comes back from Read, never as a
// silently short archive.
func (c *Client) CopyFrom(ctx context.Context, guestPath string) (io.ReadCloser, error) {
	req, err := c.request(ctx, http.MethodGet, "/v1/files", url.Values{"path": {guestPath}}, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req, http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("copy from guest %s: %w", guestPath, err)
	}
	return &trailerReader{resp: resp, path: guestPath}, nil
}

type trailerReader struct {
	resp *http.Response
	path string
}

func (t *trailerReader) Read(b []byte) (int, error) {
	n, err := t.resp.Body.Read(b)
	if errors.Is(err, io.EOF) {
		if msg := t.resp.Trailer.Get(trailerError); msg != "" {
			return n, &Error{Code: CodeOperationFailed, Message: fmt.Sprintf("copy from guest %s: %s", t.path, msg)}
		}
	}
	return n, err
}

func (t *trailerReader) Close() error { return t.resp.Body.Close() }

// PutFile writes data to guestPath with mode, owned by root, creating
// its directory if missing.
func (c *Client) PutFile(ctx context.Context, guestPath string, mode os.FileMode, data []byte) error {
	dir, name := path.Split(guestPath)
	if name == "" || !path.IsAbs(guestPath) {
		return fmt.Errorf("put file %q: need an absolute file path", guestPath)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	perm := int64(mode.Perm())
	for bit, v := range map[os.FileMode]int64{os.ModeSetuid: 0o4000, os.ModeSetgid: 0o2000, os.ModeSticky: 0o1000} {
		if mode&bit != 0 {
			perm |= v
		}
	}
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: perm, Size: int64(len(data)), ModTime: time.Now()}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	tw.Write(data)
	if err := tw.Close(); err != nil {
		return err
	}
	_, err := c.CopyTo(ctx, &buf, dir)
	return err
}

// ReadFile returns the content of the regular file at guestPath.
func (c *Client) ReadFile(ctx context.Context, guestPath string) ([]byte, error) {
	rc, err := c.CopyFrom(ctx, guestPath)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil {
		return nil, fmt.Errorf("read guest file %s: %w", guestPath, err)
	}
	if h.Typeflag != tar.TypeReg {
		return nil, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("read guest file %s: not a regular file", guestPath)}
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		return nil, fmt.Errorf("read guest file %s: %w", guestPath, err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return nil, err
	}
	return data, nil
}
