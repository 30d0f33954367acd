package roothelper

import "net/netip"

// Routes of the helper, all JSON. Everything but status is POST.
const (
	RouteBridgeEnsure = "/v1/bridge/ensure"
	RouteBridgeDelete = "/v1/bridge/delete"
	RouteTapCreate    = "/v1/tap/create"
	RouteTapDelete    = "/v1/tap/delete"
	RouteNATAdd       = "/v1/nat/add"
	RouteNATRemove    = "/v1/nat/remove"
	RouteStatus       = "/v1/status"
)

// BridgeRequest is the body of the bridge routes.
type BridgeRequest struct {
	Name string `json:"name"`
}

// TapRequest is the body of the tap routes.
type TapRequest struct {
	Name string `json:"name"`
}

// NATRequest is the body of the nat routes.
type NATRequest struct {
	Tap     string     `json:"tap"`
	GuestIP netip.Addr `json:"guest_ip"`
}

type statusRequest struct{}

// Empty is the answer of operations that return nothing.
type Empty struct{}

func (r BridgeRequest) logAttrs() []any { return []any{"name", r.Name} }
func (r TapRequest) logAttrs() []any    { return []any{"name", r.Name} }
func (r NATRequest) logAttrs() []any    { return []any{"tap", r.Tap, "guest_ip", r.GuestIP.String()} }
func (statusRequest) logAttrs() []any   { return nil }
