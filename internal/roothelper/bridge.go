package roothelper

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/banger/banger/internal/api"
	"github.com/vishvananda/netlink"
)

// BridgeStatus describes a link named like a banger bridge.
type BridgeStatus struct {
	Name string `json:"name"`
	// Kind is "bridge", unless some other kind of link took the name.
	Kind  string         `json:"kind"`
	Up    bool           `json:"up"`
	Addrs []netip.Prefix `json:"addrs"`
}

// EnsureBridge creates the configured bridge if it is missing, gives it the
// configured address (and only that IPv4 address) and sets it up.
func (s *Server) EnsureBridge(ctx context.Context, name string) (BridgeStatus, error) {
	if name != s.cfg.Bridge {
		if err := ValidateBridge(name); err != nil {
			return BridgeStatus{}, err
		}
		return BridgeStatus{}, api.Errorf(api.CodeBadRequest, "bridge %q is not the configured bridge %q", name, s.cfg.Bridge)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := s.ns.netlink()
	if err != nil {
		return BridgeStatus{}, err
	}
	defer h.Close()
	br, err := s.ensureBridge(h)
	if err != nil {
		return BridgeStatus{}, err
	}
	return bridgeStatus(h, br)
}

func (s *Server) ensureBridge(h *netlink.Handle) (netlink.Link, error) {
	name := s.cfg.Bridge
	link, err := h.LinkByName(name)
	if isLinkNotFound(err) {
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
			return nil, fmt.Errorf("create bridge %q: %w", name, err)
		}
		s.log.Info("created bridge", "name", name, "ns", s.ns.String())
		link, err = h.LinkByName(name)
	}
	if err != nil {
		return nil, fmt.Errorf("look up bridge %q: %w", name, err)
	}
	if link.Type() != "bridge" {
		return nil, api.Errorf(api.CodeConflict, "link %q exists and is a %s, not a bridge; remove it or configure another bridge name", name, link.Type())
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list addresses of bridge %q: %w", name, err)
	}
	have := false
	for _, a := range addrs {
		if addrPrefix(a) == s.cfg.CIDR {
			have = true
			continue
		}
		// Left over from an earlier subnet: its route would keep pointing
		// at the bridge.
		if err := h.AddrDel(link, &a); err != nil {
			return nil, fmt.Errorf("remove stale address %s from bridge %q: %w", addrPrefix(a), name, err)
		}
		s.log.Info("removed stale bridge address", "name", name, "addr", addrPrefix(a).String())
	}
	if !have {
		addr := &netlink.Addr{IPNet: &net.IPNet{
			IP:   s.cfg.CIDR.Addr().AsSlice(),
			Mask: net.CIDRMask(s.cfg.CIDR.Bits(), 32),
		}}
		if err := h.AddrAdd(link, addr); err != nil {
			return nil, fmt.Errorf("add address %s to bridge %q: %w", s.cfg.CIDR, name, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("set bridge %q up: %w", name, err)
		}
	}
	link, err = h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("look up bridge %q: %w", name, err)
	}
	return link, nil
}

// DeleteBridge removes a banger bridge. Any bridge-rule name is accepted so
// that a bridge left from an earlier configuration can be removed too.
func (s *Server) DeleteBridge(ctx context.Context, name string) error {
	if err := ValidateBridge(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := s.ns.netlink()
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if isLinkNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up bridge %q: %w", name, err)
	}
	if link.Type() != "bridge" {
		return api.Errorf(api.CodeConflict, "link %q is a %s, not a bridge; not deleting it", name, link.Type())
	}
	if err := h.LinkDel(link); err != nil {
		return fmt.Errorf("delete bridge %q: %w", name, err)
	}
	return nil
}

func bridgeStatus(h *netlink.Handle, link netlink.Link) (BridgeStatus, error) {
	st := BridgeStatus{
		Name:  link.Attrs().Name,
		Kind:  link.Type(),
		Up:    link.Attrs().Flags&net.FlagUp != 0,
		Addrs: []netip.Prefix{},
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(link, netlink.FAMILY_V4) })
	if err != nil {
		return st, fmt.Errorf("list addresses of %q: %w", st.Name, err)
	}
	for _, a := range addrs {
		st.Addrs = append(st.Addrs, addrPrefix(a))
	}
	return st, nil
}

func addrPrefix(a netlink.Addr) netip.Prefix {
	ip, _ := netip.AddrFromSlice(a.IP)
	ones, _ := a.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones)
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}
