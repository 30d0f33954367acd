package client

import (
	"context"
	"io"
	"net/http"
	"net/url"

	"github.com/banger/banger/internal/api"
)

// Kernel upload formats (ImportKernel).
const (
	KernelDeb   = "deb"   // a linux-image .deb
	KernelFiles = "files" // a tar: kernel, optional config, optional modules/<version>/
)

// ListKernels returns the kernels in the daemon's store.
func (c *Client) ListKernels(ctx context.Context) ([]api.Kernel, error) {
	var v []api.Kernel
	err := c.w.Call(ctx, http.MethodGet, "/v1/kernels", nil, &v)
	return v, err
}

// GetKernel returns one kernel.
func (c *Client) GetKernel(ctx context.Context, name string) (api.Kernel, error) {
	var v api.Kernel
	err := c.w.Call(ctx, http.MethodGet, "/v1/kernels/"+url.PathEscape(name), nil, &v)
	return v, err
}

// ImportKernel sends body (in format KernelDeb or KernelFiles) to the
// daemon, which imports it as name; source is the file name recorded as
// the kernel's origin. The upload streams: the daemon may not be able to
// read the user's files, so it is given their bytes.
func (c *Client) ImportKernel(ctx context.Context, name, format string, body io.Reader, source string, progress func(api.Event)) (api.Kernel, error) {
	q := url.Values{"format": {format}, "source": {source}}
	var v api.Kernel
	err := c.upload(ctx, http.MethodPost, "/v1/kernels/"+url.PathEscape(name)+"?"+q.Encode(), body, progress, &v)
	return v, err
}

// DeleteKernel removes a kernel.
func (c *Client) DeleteKernel(ctx context.Context, name string) error {
	return c.w.Call(ctx, http.MethodDelete, "/v1/kernels/"+url.PathEscape(name), nil, nil)
}

// ListImages returns the local images.
func (c *Client) ListImages(ctx context.Context) ([]api.Image, error) {
	var v []api.Image
	err := c.w.Call(ctx, http.MethodGet, "/v1/images", nil, &v)
	return v, err
}

// GetImage returns one local image.
func (c *Client) GetImage(ctx context.Context, name string) (api.Image, error) {
	var v api.Image
	err := c.w.Call(ctx, http.MethodGet, "/v1/images/"+url.PathEscape(name), nil, &v)
	return v, err
}

// PullImage makes an image local (building the default golden image the
// first time), reporting progress.
func (c *Client) PullImage(ctx context.Context, name string, progress func(api.Event)) (api.Image, error) {
	var v api.Image
	err := c.w.Stream(ctx, http.MethodPost, "/v1/images/"+url.PathEscape(name)+"/pull", nil, progress, &v)
	return v, err
}

// DeleteImage removes a local image.
func (c *Client) DeleteImage(ctx context.Context, name string) error {
	return c.w.Call(ctx, http.MethodDelete, "/v1/images/"+url.PathEscape(name), nil, nil)
}

// upload sends body as a raw request body and reads a JSON answer or an
// event stream into out.
func (c *Client) upload(ctx context.Context, method, path string, body io.Reader, progress func(api.Event), out any) error {
	return c.w.Upload(ctx, method, path, body, progress, out)
}
