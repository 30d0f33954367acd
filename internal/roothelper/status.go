package roothelper

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Status is what the helper finds in place, for doctor and tests.
type Status struct {
	// Bridge is the link with the configured bridge name; nil when absent.
	Bridge *BridgeStatus `json:"bridge,omitempty"`
	// StrayBridges are other links named like banger bridges (left from an
	// earlier configuration); Cleanup removes the ones that are bridges.
	StrayBridges []string    `json:"stray_bridges,omitempty"`
	Taps         []TapStatus `json:"taps"`
	NAT          []NATStatus `json:"nat"`
	IPForward    bool        `json:"ip_forward"`
	// ForwardDrop lists nftables forward chains outside banger's table
	// whose policy is drop ("ip filter FORWARD"): NAT'd guests get no
	// traffic through until the bridge is allowed there. Chains of legacy
	// iptables are invisible to this check.
	ForwardDrop []string `json:"forward_drop,omitempty"`
}

// Status reports the bridge, taps, NAT rules and forwarding state.
func (s *Server) Status(ctx context.Context) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Taps: []TapStatus{}, NAT: []NATStatus{}}
	h, err := s.ns.netlink()
	if err != nil {
		return st, err
	}
	defer h.Close()
	links, err := listLinks(h)
	if err != nil {
		return st, err
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	for _, l := range links {
		name := l.Attrs().Name
		switch {
		case name == s.cfg.Bridge:
			b, err := bridgeStatus(h, l)
			if err != nil {
				return st, err
			}
			st.Bridge = &b
		case bridgeRule.MatchString(name):
			st.StrayBridges = append(st.StrayBridges, name)
		case tapRule.MatchString(name):
			st.Taps = append(st.Taps, tapStatus(l, names))
		}
	}
	c, err := s.ns.nft()
	if err != nil {
		return st, err
	}
	if st.NAT, err = natStatus(c); err != nil {
		return st, err
	}
	if st.ForwardDrop, err = forwardDropChains(c); err != nil {
		return st, err
	}
	v, err := s.ns.readSysctl(ipForwardPath)
	if err != nil {
		return st, err
	}
	st.IPForward = v == "1"
	return st, nil
}

// listLinks is LinkList with interrupted dumps retried.
func listLinks(h *netlink.Handle) ([]netlink.Link, error) {
	links, err := retryDump(h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	return links, nil
}
