package cli

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/client"
	"github.com/spf13/cobra"
)

func (a *App) kernelImportCmd() *cobra.Command {
	var deb, kernelFile, modules string
	cmd := &cobra.Command{
		Use:   "import NAME (--deb FILE | --kernel FILE [--modules DIR])",
		Short: "Import a kernel from a Debian package or from a kernel file",
		Long: `Import a kernel into bangerd's store under NAME (a-z, 0-9, '.', '-').

  --deb FILE       a Debian kernel package (linux-image-*.deb): the kernel,
                   its config and its modules are taken from it
  --kernel FILE    a bzImage (vmlinuz) or an ELF vmlinux; its config is taken
                   from config-<version> or .config beside it when present
  --modules DIR    with --kernel: the kernel's lib/modules/<version> directory
                   (leave it out for a kernel with every driver built in)

The files are sent to the daemon, which need not be able to read them.`,
		Example: `  banger kernel import debian-6.1 --deb linux-image-6.1.0-28-cloud-amd64_6.1.119-1_amd64.deb
  banger kernel import mine --kernel /boot/vmlinuz-6.1.0-28-cloud-amd64 --modules /lib/modules/6.1.0-28-cloud-amd64`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			plan, err := planKernelUpload(deb, kernelFile, modules)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			// Refuse before sending megabytes the daemon would refuse.
			if _, err := a.Client().GetKernel(ctx, name); err == nil {
				return api.WithHint(api.Errorf(api.CodeAlreadyExists, "kernel %q already exists", name),
					"pick another name, or remove it first: banger kernel rm "+name)
			} else if !errors.Is(err, api.ErrNotFound) {
				return err
			}
			event, done := a.progress()
			body, wait := plan.body(event)
			k, err := a.Client().ImportKernel(ctx, name, plan.format, body, plan.source, event)
			done()
			if werr := wait(); werr != nil && err != nil {
				// The daemon only saw the upload break; this is why.
				return werr
			}
			if err != nil {
				return err
			}
			mods := "no modules"
			if k.HasModules {
				mods = "modules " + humanSize(k.ModulesSize)
			}
			fmt.Fprintf(a.Out, "imported kernel %s (%s, vmlinux %s, %s)\n", k.Name, k.Version, humanSize(k.VmlinuxSize), mods)
			return nil
		},
	}
	cmd.Flags().StringVar(&deb, "deb", "", "a Debian kernel package (linux-image-*.deb)")
	cmd.Flags().StringVar(&kernelFile, "kernel", "", "a kernel image: bzImage (vmlinuz) or ELF vmlinux")
	cmd.Flags().StringVar(&modules, "modules", "", "with --kernel: its lib/modules/<version> directory")
	cmd.MarkFlagFilename("deb", "deb")
	cmd.MarkFlagFilename("kernel")
	cmd.MarkFlagDirname("modules")
	return cmd
}

// kernelUpload is what `kernel import` sends: a .deb as is, or a tar of
// the kernel file, its config and its modules tree.
type kernelUpload struct {
	format string // client.KernelDeb or client.KernelFiles
	source string // the file name, recorded by the daemon
	deb    string
	kernel string
	config string // "" when none was found
	// modules is lib/modules/<version>; it goes to modules/<version>/.
	modules string
	total   int64 // bytes of file content, for the progress bar
}

// planKernelUpload checks the flags and the files they name.
func planKernelUpload(deb, kernelFile, modules string) (kernelUpload, error) {
	switch {
	case deb == "" && kernelFile == "":
		return kernelUpload{}, api.WithHint(errors.New("nothing to import"),
			"give --deb FILE (a linux-image .deb), or --kernel FILE with --modules DIR if it has modules")
	case deb != "" && kernelFile != "":
		return kernelUpload{}, api.WithHint(errors.New("--deb and --kernel exclude each other"), "give one of them")
	case deb != "" && modules != "":
		return kernelUpload{}, api.WithHint(errors.New("--modules goes with --kernel"), "a .deb brings its own modules; drop --modules")
	}
	if deb != "" {
		size, err := regularFile(deb)
		if err != nil {
			return kernelUpload{}, err
		}
		return kernelUpload{format: client.KernelDeb, source: filepath.Base(deb), deb: deb, total: size}, nil
	}
	size, err := regularFile(kernelFile)
	if err != nil {
		return kernelUpload{}, err
	}
	u := kernelUpload{format: client.KernelFiles, source: filepath.Base(kernelFile), kernel: kernelFile, total: size}
	if modules != "" {
		modules = filepath.Clean(modules)
		fi, err := os.Stat(modules)
		if err != nil {
			return kernelUpload{}, fmt.Errorf("modules: %w", err)
		}
		if !fi.IsDir() {
			return kernelUpload{}, fmt.Errorf("modules: %s is not a directory", modules)
		}
		if b := filepath.Base(modules); b == "modules" || b == "lib" || !strings.ContainsAny(b, "0123456789") {
			return kernelUpload{}, api.WithHint(fmt.Errorf("modules: %s is not named by a kernel version", modules),
				"give the version directory itself, e.g. /lib/modules/6.1.0-28-cloud-amd64")
		}
		u.modules = modules
		n, err := treeSize(modules)
		if err != nil {
			return kernelUpload{}, fmt.Errorf("modules: %w", err)
		}
		u.total += n
	}
	// Where /boot and kernel build trees keep the configuration.
	dir, base := filepath.Dir(kernelFile), filepath.Base(kernelFile)
	var candidates []string
	if u.modules != "" {
		candidates = append(candidates, "config-"+filepath.Base(u.modules))
	}
	for _, p := range []string{"vmlinuz-", "vmlinux-"} {
		if v, ok := strings.CutPrefix(base, p); ok {
			candidates = append(candidates, "config-"+v)
		}
	}
	for _, c := range append(candidates, ".config") {
		if size, err := regularFile(filepath.Join(dir, c)); err == nil {
			u.config = filepath.Join(dir, c)
			u.total += size
			break
		}
	}
	return u, nil
}

func regularFile(p string) (int64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file", p)
	}
	return fi.Size(), nil
}

func treeSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// body returns the request body, reporting upload progress to event, and
// wait, which returns why producing the body failed, if it did.
func (u kernelUpload) body(event func(api.Event)) (io.Reader, func() error) {
	counter := &uploadCounter{total: u.total, event: event}
	if u.format == client.KernelDeb {
		f, err := os.Open(u.deb)
		if err != nil {
			return errReader{err}, func() error { return err }
		}
		counter.r = f
		return counter, f.Close
	}
	pr, pw := io.Pipe()
	counter.r = pr
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		werr = u.writeTar(pw)
		pw.CloseWithError(werr)
	})
	return counter, func() error {
		pr.Close() // unblock the writer if the request stopped reading
		wg.Wait()
		if errors.Is(werr, io.ErrClosedPipe) {
			return nil
		}
		return werr
	}
}

// writeTar writes the UploadFiles archive: kernel, config, modules/<v>/...
func (u kernelUpload) writeTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	addFile := func(name, src string) error {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: int64(fi.Mode().Perm()), Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return err
		}
		if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
			return fmt.Errorf("read %s: %w", src, err)
		}
		return nil
	}
	if err := addFile("kernel", u.kernel); err != nil {
		return err
	}
	if u.config != "" {
		if err := addFile("config", u.config); err != nil {
			return err
		}
	}
	if u.modules != "" {
		prefix := path.Join("modules", filepath.Base(u.modules))
		if err := tw.WriteHeader(&tar.Header{Name: "modules/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			return err
		}
		err := filepath.WalkDir(u.modules, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(u.modules, p)
			if err != nil {
				return err
			}
			name := path.Join(prefix, filepath.ToSlash(rel))
			switch t := d.Type(); {
			case t.IsDir():
				return tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755})
			case t.IsRegular():
				return addFile(name, p)
			case t&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				return tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777})
			default:
				return fmt.Errorf("%s: not a regular file, directory or symlink", p)
			}
		})
		if err != nil {
			return fmt.Errorf("modules: %w", err)
		}
	}
	return tw.Close()
}

// uploadCounter reports the bytes read through it as "upload" progress,
// about every percent.
type uploadCounter struct {
	r     io.Reader
	total int64
	n     int64
	next  int64
	event func(api.Event)
}

func (c *uploadCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.event != nil && (c.n >= c.next || err == io.EOF) {
		c.event(api.Event{Type: api.EventProgress, Stage: "upload", Current: min(c.n, c.total), Total: c.total})
		c.next = c.n + max(c.total/100, 1<<20)
	}
	return n, err
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
