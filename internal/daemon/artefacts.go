package daemon

import (
	"context"
	"io"
	"net/http"
	"sync"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/buildinfo"
	"github.com/banger/banger/internal/guest/initramfs"
	"github.com/banger/banger/internal/image"
	"github.com/banger/banger/internal/kernel"
	"github.com/banger/banger/internal/roothelper"
	"github.com/banger/banger/internal/wire"
)

// artefactServices holds the kernel and image stores, opened on first use
// (a failed open is retried by the next caller).
type artefactServices struct {
	mu      sync.Mutex
	kernels *kernel.Store
	images  *image.Store
}

// artefacts returns the daemon's kernel and image stores.
func (d *Daemon) artefacts() (*kernel.Store, *image.Store, error) {
	a := &d.art
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.images != nil {
		return a.kernels, a.images, nil
	}
	ks, err := kernel.NewStore(kernel.StoreConfig{
		Dir:   d.layout.KernelsDir(),
		Log:   d.log.With("component", "kernels"),
		InUse: d.kernelUsers,
		BuildInitramfs: func(ctx context.Context, k kernel.Kernel, agent string, w io.Writer) error {
			return initramfs.Build(ctx, initramfs.Options{Kernel: k, InitPath: agent}, w)
		},
		InitramfsTag: buildinfo.Get().String(),
	})
	if err != nil {
		return nil, nil, err
	}
	is, err := image.NewStore(image.StoreConfig{
		Dir:     d.layout.ImagesDir(),
		Kernels: ks,
		Builder: helperBuilder{&roothelper.Client{Client: d.helper}},
		Log:     d.log.With("component", "images"),
		InUse:   d.imageUsers,
	})
	if err != nil {
		return nil, nil, err
	}
	a.kernels, a.images = ks, is
	return ks, is, nil
}

// artefactNames lists kernel or image names, for GET /v1/names/{kind}:
// the stores, not state records, know them.
func (d *Daemon) artefactNames(ctx context.Context, kind string) ([]string, error) {
	ks, is, err := d.artefacts()
	if err != nil {
		return nil, err
	}
	names := []string{}
	switch kind {
	case "kernel", "kernels":
		list, err := ks.List(ctx)
		for _, k := range list {
			names = append(names, k.Name)
		}
		return names, err
	case "image", "images":
		list, err := is.List(ctx)
		for _, img := range list {
			names = append(names, img.Name)
		}
		return names, err
	}
	return nil, api.Errorf(api.CodeBadRequest, "unknown artefact kind %q (want image or kernel)", kind)
}

// kernelUsers names the VMs and images that use a kernel.
func (d *Daemon) kernelUsers(name string) []string {
	var users []string
	if d.vms != nil {
		for _, vm := range d.vms.UsingKernel(name) {
			users = append(users, "vm "+vm)
		}
	}
	d.art.mu.Lock()
	images := d.art.images
	d.art.mu.Unlock()
	if images != nil {
		list, _ := images.List(context.Background())
		for _, img := range list {
			if img.Kernel == name {
				users = append(users, "image "+img.Name)
			}
		}
	}
	return users
}

// imageUsers names the VMs that use an image.
func (d *Daemon) imageUsers(name string) []string {
	if d.vms == nil {
		return nil
	}
	return d.vms.UsingImage(name)
}

// helperBuilder builds the golden image through the root helper.
type helperBuilder struct{ c *roothelper.Client }

func (b helperBuilder) BuildGolden(ctx context.Context, name string, progress func(api.Event)) error {
	_, err := b.c.BuildImage(ctx, name, progress)
	return err
}

// lazyStream answers a request with plain JSON when the operation sends no
// progress, and with an event stream from its first progress event on. So
// a request that is refused or finds its answer at once gets a normal
// error status, and an upload is fully read before the response begins.
type lazyStream struct {
	w  http.ResponseWriter
	mu sync.Mutex
	st *wire.Stream
}

func (l *lazyStream) event(ev api.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st == nil {
		l.st = wire.NewStream(l.w)
	}
	l.st.Send(ev)
}

func (l *lazyStream) progress(stage, msg string) {
	l.event(api.Event{Type: api.EventProgress, Stage: stage, Message: msg})
}

func (l *lazyStream) finish(ctx context.Context, result any, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.st != nil:
		l.st.Finish(ctx, result, err)
	case err != nil:
		wire.WriteError(l.w, err, wire.OpID(ctx))
	default:
		wire.WriteJSON(l.w, http.StatusOK, result)
	}
}
