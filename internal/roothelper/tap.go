package roothelper

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/banger/banger/internal/api"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TapStatus describes a link named like a banger tap.
type TapStatus struct {
	Name string `json:"name"`
	// Kind is "tuntap", unless some other kind of link took the name.
	Kind   string `json:"kind"`
	Owner  uint32 `json:"owner"`
	Group  uint32 `json:"group"`
	Master string `json:"master,omitempty"`
	Up     bool   `json:"up"`
}

// The flags the VMMs open their tap with. Multiqueue must match exactly
// between creator and opener; the other features are reset by the opener.
const tapFlags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR

// CreateTap makes a persistent tap owned by the owner user (so the
// unprivileged VMM can attach to it), enslaved to the configured bridge,
// which it ensures first, and up. An existing tap with the same owner is
// reused.
func (s *Server) CreateTap(ctx context.Context, name string) (TapStatus, error) {
	if err := ValidateTap(name); err != nil {
		return TapStatus{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h, err := s.ns.netlink()
	if err != nil {
		return TapStatus{}, err
	}
	defer h.Close()
	br, err := s.ensureBridge(h)
	if err != nil {
		return TapStatus{}, err
	}
	link, err := h.LinkByName(name)
	created := false
	if isLinkNotFound(err) {
		if err := s.ns.do(func() error { return makeTap(name, s.cfg.OwnerUID, s.cfg.OwnerGID) }); err != nil {
			return TapStatus{}, fmt.Errorf("create tap %q: %w", name, err)
		}
		created = true
		s.log.Info("created tap", "name", name, "owner", s.cfg.OwnerUID, "ns", s.ns.String())
		link, err = h.LinkByName(name)
	}
	if err != nil {
		return TapStatus{}, fmt.Errorf("look up tap %q: %w", name, err)
	}
	if !created {
		if err := s.checkExistingTap(link); err != nil {
			return TapStatus{}, err
		}
	}
	if err := attachTap(h, link, br); err != nil {
		if created {
			// A tap this call made and could not finish is not left behind.
			if derr := h.LinkDel(link); derr != nil {
				err = errors.Join(err, fmt.Errorf("remove half-made tap %q: %w", name, derr))
			}
		}
		return TapStatus{}, err
	}
	link, err = h.LinkByName(name)
	if err != nil {
		return TapStatus{}, fmt.Errorf("look up tap %q: %w", name, err)
	}
	return tapStatus(link, map[int]string{br.Attrs().Index: br.Attrs().Name}), nil
}

func (s *Server) checkExistingTap(link netlink.Link) error {
	name := link.Attrs().Name
	tt, ok := link.(*netlink.Tuntap)
	if !ok {
		return api.Errorf(api.CodeConflict, "link %q exists and is a %s, not a tap; remove it first", name, link.Type())
	}
	switch {
	case tt.Mode != netlink.TUNTAP_MODE_TAP:
		return api.Errorf(api.CodeConflict, "link %q exists and is a tun device, not a tap; delete it first", name)
	case tt.Flags&netlink.TUNTAP_MULTI_QUEUE != 0:
		return api.Errorf(api.CodeConflict, "tap %q exists and is multiqueue; delete it first", name)
	case tt.NonPersist:
		return api.Errorf(api.CodeConflict, "tap %q exists but is not persistent (another program holds it); not taking it over", name)
	case tt.Owner != uint32(s.cfg.OwnerUID) || tt.Group != uint32(s.cfg.OwnerGID):
		return api.Errorf(api.CodeConflict, "tap %q exists owned by %d:%d, not the owner %d:%d; delete it first",
			name, tt.Owner, tt.Group, s.cfg.OwnerUID, s.cfg.OwnerGID)
	}
	return nil
}

func attachTap(h *netlink.Handle, tap, br netlink.Link) error {
	name := tap.Attrs().Name
	if tap.Attrs().MasterIndex != br.Attrs().Index {
		if err := h.LinkSetMaster(tap, br); err != nil {
			return fmt.Errorf("attach tap %q to bridge %q: %w", name, br.Attrs().Name, err)
		}
	}
	if tap.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(tap); err != nil {
			return fmt.Errorf("set tap %q up: %w", name, err)
		}
	}
	return nil
}

// makeTap creates a persistent tap in the calling thread's namespace. There
// is no rtnetlink call for this (the kernel refuses "tun" newlink), so it
// goes through /dev/net/tun; netlink's own helper would ignore the
// namespace of the handle.
func makeTap(name string, uid, gid int) error {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/net/tun: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	// TUN_EXCL: never attach to a device someone created since we looked.
	ifr.SetUint16(tapFlags | unix.IFF_TUN_EXCL)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fmt.Errorf("TUNSETIFF: %w", err)
	}
	// Until TUNSETPERSIST the device dies with fd, so a failure below
	// leaves nothing behind.
	if err := unix.IoctlSetInt(fd, unix.TUNSETOWNER, uid); err != nil {
		return fmt.Errorf("TUNSETOWNER %d: %w", uid, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETGROUP, gid); err != nil {
		return fmt.Errorf("TUNSETGROUP %d: %w", gid, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		return fmt.Errorf("TUNSETPERSIST: %w", err)
	}
	return nil
}

// DeleteTap removes a banger tap; a missing one is fine.
func (s *Server) DeleteTap(ctx context.Context, name string) error {
	if err := ValidateTap(name); err != nil {
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
		return fmt.Errorf("look up tap %q: %w", name, err)
	}
	if _, ok := link.(*netlink.Tuntap); !ok {
		return api.Errorf(api.CodeConflict, "link %q is a %s, not a tap; not deleting it", name, link.Type())
	}
	if err := h.LinkDel(link); err != nil {
		return fmt.Errorf("delete tap %q: %w", name, err)
	}
	return nil
}

func tapStatus(link netlink.Link, names map[int]string) TapStatus {
	a := link.Attrs()
	st := TapStatus{Name: a.Name, Kind: link.Type(), Up: a.Flags&net.FlagUp != 0}
	if a.MasterIndex != 0 {
		st.Master = names[a.MasterIndex]
		if st.Master == "" {
			st.Master = fmt.Sprintf("ifindex %d", a.MasterIndex)
		}
	}
	if tt, ok := link.(*netlink.Tuntap); ok {
		st.Owner, st.Group = tt.Owner, tt.Group
	}
	return st
}
