package daemon

import (
	"io"
	"net/http"
	"strings"
	"unicode"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/kernel"
)

// kernelRoutes registers /v1/kernels/... (kernel store).
func (d *Daemon) kernelRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/kernels", handler(d.listKernels))
	mux.Handle("GET /v1/kernels/{name}", handler(d.getKernel))
	mux.HandleFunc("POST /v1/kernels/{name}", d.importKernel)
	mux.Handle("DELETE /v1/kernels/{name}", handler(d.removeKernel))
}

func (d *Daemon) listKernels(r *http.Request) ([]api.Kernel, error) {
	ks, _, err := d.artefacts()
	if err != nil {
		return nil, err
	}
	list, err := ks.List(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]api.Kernel, 0, len(list))
	for _, k := range list {
		out = append(out, kernelView(k, d.kernelUsers(k.Name)))
	}
	return out, nil
}

func (d *Daemon) getKernel(r *http.Request) (api.Kernel, error) {
	ks, _, err := d.artefacts()
	if err != nil {
		return api.Kernel{}, err
	}
	k, err := ks.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		return api.Kernel{}, err
	}
	return kernelView(k, d.kernelUsers(k.Name)), nil
}

// importKernel receives a kernel as the request body
// (?format=deb|files&source=FILENAME), then imports it.
func (d *Daemon) importKernel(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	out := &lazyStream{w: w}
	ks, _, err := d.artefacts()
	if err != nil {
		out.finish(ctx, nil, err)
		return
	}
	q := r.URL.Query()
	k, err := ks.ImportUpload(ctx, r.PathValue("name"), q.Get("format"), r.Body, uploadSource(q.Get("source")), out.progress)
	if err != nil {
		// A refusal before the upload was read (bad name, name taken):
		// read it anyway, so the client gets the answer rather than a
		// broken pipe.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, kernel.MaxUpload))
		out.finish(ctx, nil, err)
		return
	}
	out.finish(ctx, kernelView(k, nil), nil)
}

// uploadSource makes the client's file name fit for a record: printable,
// one line, bounded.
func uploadSource(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, s)
	if len(s) > 256 {
		s = s[:256]
	}
	if s == "" {
		return "upload"
	}
	return "upload of " + s
}

func (d *Daemon) removeKernel(r *http.Request) (struct{}, error) {
	ks, _, err := d.artefacts()
	if err != nil {
		return struct{}{}, err
	}
	return struct{}{}, ks.Remove(r.Context(), r.PathValue("name"))
}

func kernelView(k kernel.Kernel, users []string) api.Kernel {
	return api.Kernel{
		Name: k.Name, Version: k.Version, Source: k.Source, Dir: k.Dir,
		Vmlinux: k.VmlinuxPath(), Vmlinuz: k.VmlinuzPath(),
		VmlinuxSHA256: k.VmlinuxSHA256, VmlinuxSize: k.VmlinuxSize, VmlinuzSize: k.VmlinuzSize,
		ModulesSize: k.ModulesSize, HasModules: k.HasModules, HasConfig: k.HasConfig,
		MMIOCmdlineDevices: k.MMIOCmdlineDevices, Created: k.Created, UsedBy: users,
	}
}
