package daemon

import (
	"net/http"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/image"
)

// imageRoutes registers /v1/images/... (image store).
func (d *Daemon) imageRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/images", handler(d.listImages))
	mux.Handle("GET /v1/images/{name}", handler(d.getImage))
	mux.HandleFunc("POST /v1/images/{name}/pull", d.pullImage)
	mux.Handle("DELETE /v1/images/{name}", handler(d.removeImage))
}

func (d *Daemon) listImages(r *http.Request) ([]api.Image, error) {
	_, is, err := d.artefacts()
	if err != nil {
		return nil, err
	}
	list, err := is.List(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, 0, len(list))
	for _, img := range list {
		out = append(out, imageView(img, d.imageUsers(img.Name)))
	}
	return out, nil
}

func (d *Daemon) getImage(r *http.Request) (api.Image, error) {
	_, is, err := d.artefacts()
	if err != nil {
		return api.Image{}, err
	}
	img, err := is.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return api.Image{}, err
	}
	return imageView(img, d.imageUsers(img.Name)), nil
}

// pullImage makes the image local (building the golden one on first use),
// streaming progress when there is work to do.
func (d *Daemon) pullImage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	out := &lazyStream{w: w}
	_, is, err := d.artefacts()
	if err != nil {
		out.finish(ctx, nil, err)
		return
	}
	img, err := is.Ensure(ctx, r.PathValue("name"), out.event)
	if err != nil {
		out.finish(ctx, nil, err)
		return
	}
	out.finish(ctx, imageView(img, d.imageUsers(img.Name)), nil)
}

func (d *Daemon) removeImage(r *http.Request) (struct{}, error) {
	_, is, err := d.artefacts()
	if err != nil {
		return struct{}{}, err
	}
	return struct{}{}, is.Remove(r.Context(), r.PathValue("name"))
}

func imageView(img image.Image, users []string) api.Image {
	return api.Image{
		Name: img.Name, Dir: img.Dir, RootFS: img.RootFS, WorkSeed: img.WorkSeed, Kernel: img.Kernel,
		SizeBytes: img.SizeBytes, WorkSeedBytes: img.WorkSeedBytes, Created: img.Created,
		Source: img.Source, Manifest: img.Manifest, UsedBy: users,
	}
}
