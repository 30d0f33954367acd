package roothelper

import (
	"context"
	"errors"
	"fmt"
	"github.com/banger/banger/internal/namelock"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/command"
	"github.com/banger/banger/internal/image/golden"
	"github.com/banger/banger/internal/wire"
)

// RouteImageBuild builds the default golden image, streaming progress.
const RouteImageBuild = "/v1/images/build"

// ImageBuildRequest is the body of RouteImageBuild. Only the golden
// image's name (golden.DefaultSpec().Name) is accepted.
type ImageBuildRequest struct {
	Name string `json:"name"`
}

func (r ImageBuildRequest) logAttrs() []any { return []any{"name", r.Name} }

// ImageBuildResult is the final event of RouteImageBuild.
type ImageBuildResult struct {
	Name string `json:"name"`
	Dir  string `json:"dir"`
	// Built is false when the image was there already (another request
	// built it, or a previous answer was lost).
	Built   bool    `json:"built"`
	Seconds float64 `json:"seconds,omitempty"`
	// Log holds the full output of the build's tools.
	Log string `json:"log,omitempty"`
}

// Subdirectories of the cache dir the image build uses, root-owned.
const (
	buildSubdir = "build" // golden's work dir, the build logs and the lock (0711, so the owner can read the logs)
	aptSubdir   = "apt"   // downloaded .debs (0700)
	miseSubdir  = "mise"  // the verified mise tarball (0700)
)

// imageBuildHandler serves RouteImageBuild: refusals as plain errors, then
// progress events and the result as a stream.
func (s *Server) imageBuildHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := r.Context()
		var req ImageBuildRequest
		err := wire.DecodeJSON(r, &req)
		if err == nil {
			_, err = s.imageBuildPaths(req.Name)
		}
		if err != nil {
			s.logOp(ctx, "image.build", req.logAttrs(), err, time.Since(start))
			wire.WriteError(w, err, wire.OpID(ctx))
			return
		}
		st := wire.NewStream(w)
		res, err := s.BuildImage(ctx, req.Name, func(stage, msg string) { st.Progress(stage, msg, 0, 0) })
		s.logOp(ctx, "image.build", append(req.logAttrs(), "built", res.Built), err, time.Since(start))
		st.Finish(ctx, res, err)
	})
}

// imageBuildDirs are the paths one image build touches.
type imageBuildDirs struct {
	dest, build, apt, mise string
}

// imageBuildPaths validates name and the paths its build would use.
func (s *Server) imageBuildPaths(name string) (imageBuildDirs, error) {
	if want := golden.DefaultSpec().Name; name != want {
		return imageBuildDirs{}, api.WithHint(api.Errorf(api.CodeBadRequest, "the root helper builds only the %s image, not %q", want, name),
			"pull "+want+", or import other images without the helper")
	}
	l := s.cfg.Layout
	// The state dir is the owner daemon's: never create it as root.
	if fi, err := os.Lstat(l.StateDir); err != nil || !fi.IsDir() {
		return imageBuildDirs{}, api.WithHint(api.Errorf(api.CodeUnavailable, "state dir %s is missing", l.StateDir),
			"start bangerd first (sudo banger system restart)")
	}
	d := imageBuildDirs{
		dest:  filepath.Join(l.ImagesDir(), name),
		build: filepath.Join(l.CacheDir, buildSubdir),
		apt:   filepath.Join(l.CacheDir, aptSubdir),
		mise:  filepath.Join(l.CacheDir, miseSubdir),
	}
	if err := ValidateManagedPath(d.dest, l.StateDir); err != nil {
		return imageBuildDirs{}, err
	}
	for _, p := range []string{d.build, d.apt, d.mise} {
		if err := ValidateManagedPath(p, l.CacheDir); err != nil {
			return imageBuildDirs{}, err
		}
	}
	return d, nil
}

// BuildImage builds the golden image into ImagesDir/<name> and gives it to
// the owner. Builds run one at a time; a request that waited for a build of
// the same image finds it there and succeeds without building again. The
// tools' full output goes to CacheDir/build/<name>.log.
func (s *Server) BuildImage(ctx context.Context, name string, progress func(stage, msg string)) (ImageBuildResult, error) {
	if progress == nil {
		progress = func(string, string) {}
	}
	d, err := s.imageBuildPaths(name)
	if err != nil {
		return ImageBuildResult{}, err
	}
	l := s.cfg.Layout
	uid, gid := s.cfg.OwnerUID, s.cfg.OwnerGID
	for _, dir := range []string{l.ImagesDir(), l.CacheDir} {
		if err := ownerDir(dir, uid, gid); err != nil {
			return ImageBuildResult{}, fmt.Errorf("build image %q: %w", name, err)
		}
	}
	if err := wire.EnsureDir(d.build, 0o711, 0, 0); err != nil {
		return ImageBuildResult{}, fmt.Errorf("build image %q: %w", name, err)
	}
	for _, dir := range []string{d.apt, d.mise} {
		if err := wire.EnsureDir(dir, 0o700, 0, 0); err != nil {
			return ImageBuildResult{}, fmt.Errorf("build image %q: %w", name, err)
		}
	}
	unlock, err := namelock.LockFile(ctx, filepath.Join(d.build, "images.lock"), func() {
		progress("build image", "waiting for another image build to finish")
	})
	if err != nil {
		return ImageBuildResult{}, fmt.Errorf("build image %q: %w", name, err)
	}
	defer unlock()

	res := ImageBuildResult{Name: name, Dir: d.dest}
	if fi, err := os.Lstat(d.dest); err == nil {
		if !fi.IsDir() {
			return ImageBuildResult{}, fmt.Errorf("build image %q: %s exists and is not a directory", name, d.dest)
		}
		// Built while we waited, or before a lost answer: hand it over.
		if err := chownTree(d.dest, uid, gid); err != nil {
			return ImageBuildResult{}, fmt.Errorf("build image %q: give it to the owner: %w", name, err)
		}
		return res, nil
	}

	res.Log = filepath.Join(d.build, name+".log")
	logf, err := os.OpenFile(res.Log, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o640)
	if err != nil {
		return ImageBuildResult{}, fmt.Errorf("build image %q: %w", name, err)
	}
	defer logf.Close()
	if err := logf.Chown(uid, gid); err != nil {
		return ImageBuildResult{}, fmt.Errorf("build image %q: %w", name, err)
	}
	fmt.Fprintf(logf, "bangerd-root: building %s into %s at %s\n", name, d.dest, time.Now().UTC().Format(time.RFC3339))
	m, err := golden.Build(ctx, golden.DefaultSpec(), d.dest, golden.Options{
		WorkDir:      d.build,
		AptCacheDir:  d.apt,
		MiseCacheDir: d.mise,
		Progress:     progress,
		Log:          logf,
	})
	if err != nil {
		fmt.Fprintf(logf, "bangerd-root: %v\n", err)
		return ImageBuildResult{}, api.WithHint(oneLine(err), "the full log is "+res.Log)
	}
	if err := chownTree(d.dest, uid, gid); err != nil {
		return ImageBuildResult{}, fmt.Errorf("build image %q: give it to the owner: %w", name, err)
	}
	res.Built, res.Seconds = true, m.BuildSeconds
	return res, nil
}

// oneLine folds a build error (which ends with the tail of a tool's
// output) into one line: its first line, then the last lines of the rest.
func oneLine(err error) error {
	first, rest, ok := strings.Cut(strings.TrimSpace(err.Error()), "\n")
	if !ok {
		return err
	}
	return &api.Error{Code: api.CodeOf(err), Message: first + ": " + command.Tail([]byte(rest), 3)}
}

// ownerDir creates dir for the owner (0700) if it does not exist; an
// existing one is left as it is (it is the owner's).
func ownerDir(dir string, uid, gid int) error {
	err := os.Mkdir(dir, 0o700)
	if errors.Is(err, fs.ErrExist) {
		fi, err := os.Lstat(dir)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if err != nil {
		return err
	}
	return os.Lchown(dir, uid, gid)
}

// chownTree gives what the build wrote under dir (everything root owns
// there) to uid:gid. It walks through an os.Root opened on dir, so a
// symlink (or a directory swapped for one) can never lead it outside, and
// uses lchown, so it never follows one either. Hard-linked files are left
// alone: their other names may be anywhere.
func chownTree(dir string, uid, gid int) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	// dir itself must be what was checked: a directory, not a symlink to one.
	opened, err := root.Stat(".")
	if err != nil {
		return err
	}
	named, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !os.SameFile(opened, named) {
		return fmt.Errorf("%s changed while being opened", dir)
	}
	var errs []error
	walkErr := fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Uid != 0 || (!fi.IsDir() && st.Nlink > 1) {
			return nil
		}
		if err := root.Lchown(p, uid, gid); err != nil {
			errs = append(errs, err)
		}
		return nil
	})
	return errors.Join(append(errs, walkErr)...)
}

// BuildImage asks the helper to build the golden image name, passing its
// progress events to progress (which may be nil).
func (c *Client) BuildImage(ctx context.Context, name string, progress func(api.Event)) (ImageBuildResult, error) {
	var out ImageBuildResult
	err := c.Stream(ctx, http.MethodPost, RouteImageBuild, ImageBuildRequest{Name: name}, progress, &out)
	return out, err
}
