package boot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// rtnl is a NETLINK_ROUTE socket for the few requests the init makes; each
// request waits for the kernel's acknowledgement.
type rtnl struct {
	fd  int
	seq uint32
}

func openRtnl() (*rtnl, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	return &rtnl{fd: fd}, nil
}

func (n *rtnl) Close() error { return unix.Close(n.fd) }

// rtattr appends one route attribute (type, payload), 4-byte aligned.
func rtattr(b []byte, typ uint16, payload []byte) []byte {
	l := unix.SizeofRtAttr + len(payload)
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// nlmsg frames body as a netlink request with an ack.
func nlmsg(typ, flags uint16, seq uint32, body []byte) []byte {
	b := make([]byte, 0, unix.SizeofNlMsghdr+len(body))
	b = binary.NativeEndian.AppendUint32(b, uint32(unix.SizeofNlMsghdr+len(body)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	return append(b, body...)
}

func (n *rtnl) do(typ, flags uint16, body []byte) error {
	n.seq++
	if err := unix.Sendto(n.fd, nlmsg(typ, flags, n.seq, body), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		nr, _, err := unix.Recvfrom(n.fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := parseNetlink(buf[:nr])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != n.seq || m.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			if len(m.Data) < 4 {
				return errors.New("netlink: short error message")
			}
			if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
				return unix.Errno(-code)
			}
			return nil
		}
	}
}

// parseNetlink splits a datagram into messages.
func parseNetlink(b []byte) ([]netlinkMsg, error) {
	var msgs []netlinkMsg
	for len(b) >= unix.SizeofNlMsghdr {
		h := unix.NlMsghdr{
			Len:   binary.NativeEndian.Uint32(b[0:4]),
			Type:  binary.NativeEndian.Uint16(b[4:6]),
			Flags: binary.NativeEndian.Uint16(b[6:8]),
			Seq:   binary.NativeEndian.Uint32(b[8:12]),
			Pid:   binary.NativeEndian.Uint32(b[12:16]),
		}
		if h.Len < unix.SizeofNlMsghdr || int(h.Len) > len(b) {
			return nil, errors.New("netlink: malformed message")
		}
		msgs = append(msgs, netlinkMsg{Header: h, Data: b[unix.SizeofNlMsghdr:h.Len]})
		b = b[min(len(b), int((h.Len+3)&^3)):]
	}
	return msgs, nil
}

type netlinkMsg struct {
	Header unix.NlMsghdr
	Data   []byte
}

// linkUp sets IFF_UP on the interface.
func (n *rtnl) linkUp(index int) error {
	// struct ifinfomsg: family, pad, type, index, flags, change.
	body := make([]byte, unix.SizeofIfInfomsg)
	body[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(body[4:], uint32(index))
	binary.NativeEndian.PutUint32(body[8:], unix.IFF_UP)
	binary.NativeEndian.PutUint32(body[12:], unix.IFF_UP)
	if err := n.do(unix.RTM_NEWLINK, 0, body); err != nil {
		return fmt.Errorf("set link %d up: %w", index, err)
	}
	return nil
}

// addAddr assigns an IPv4 address with its prefix (replacing it if there).
func (n *rtnl) addAddr(index int, p netip.Prefix) error {
	a := p.Addr().As4()
	// struct ifaddrmsg: family, prefixlen, flags, scope, index.
	body := []byte{unix.AF_INET, byte(p.Bits()), 0, unix.RT_SCOPE_UNIVERSE}
	body = binary.NativeEndian.AppendUint32(body, uint32(index))
	body = rtattr(body, unix.IFA_LOCAL, a[:])
	body = rtattr(body, unix.IFA_ADDRESS, a[:])
	if p.Bits() < 31 {
		bc := broadcast(p).As4()
		body = rtattr(body, unix.IFA_BROADCAST, bc[:])
	}
	if err := n.do(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, body); err != nil {
		return fmt.Errorf("add address %s: %w", p, err)
	}
	return nil
}

func broadcast(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := ^uint32(0) >> p.Bits()
	v := binary.BigEndian.Uint32(a[:]) | host
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], v)
	return netip.AddrFrom4(out)
}

// addDefaultRoute routes 0.0.0.0/0 via gw out of the interface.
func (n *rtnl) addDefaultRoute(index int, gw netip.Addr) error {
	g := gw.As4()
	// struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
	body := []byte{unix.AF_INET, 0, 0, 0, unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST, 0, 0, 0, 0}
	body = rtattr(body, unix.RTA_GATEWAY, g[:])
	oif := binary.NativeEndian.AppendUint32(nil, uint32(index))
	body = rtattr(body, unix.RTA_OIF, oif)
	if err := n.do(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, body); err != nil {
		return fmt.Errorf("add default route via %s: %w", gw, err)
	}
	return nil
}

// waitInterface waits for the interface with mac to appear (virtio_net
// registers it asynchronously) and returns it.
func waitInterface(ctx context.Context, mac net.HardwareAddr) (net.Interface, error) {
	for {
		ifs, err := net.Interfaces()
		if err != nil {
			return net.Interface{}, fmt.Errorf("list interfaces: %w", err)
		}
		for _, i := range ifs {
			if i.HardwareAddr.String() == mac.String() {
				return i, nil
			}
		}
		select {
		case <-ctx.Done():
			var names []string
			for _, i := range ifs {
				names = append(names, i.Name+" "+i.HardwareAddr.String())
			}
			return net.Interface{}, fmt.Errorf("no interface with MAC %s (have %v): %w", mac, names, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// configureNetwork brings lo up and, when p asks for it, the interface with
// p.MAC with p.Address and a default route via p.Gateway. It returns the
// name of the configured interface ("" when none).
func configureNetwork(ctx context.Context, p Params) (string, error) {
	n, err := openRtnl()
	if err != nil {
		return "", err
	}
	defer n.Close()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return "", fmt.Errorf("find lo: %w", err)
	}
	if err := n.linkUp(lo.Index); err != nil {
		return "", err
	}
	if !p.Address.IsValid() {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ifc, err := waitInterface(ctx, p.MAC)
	if err != nil {
		return "", err
	}
	if err := n.addAddr(ifc.Index, p.Address); err != nil {
		return "", fmt.Errorf("%s: %w", ifc.Name, err)
	}
	if err := n.linkUp(ifc.Index); err != nil {
		return "", fmt.Errorf("%s: %w", ifc.Name, err)
	}
	if p.Gateway.IsValid() {
		if err := n.addDefaultRoute(ifc.Index, p.Gateway); err != nil {
			return "", fmt.Errorf("%s: %w", ifc.Name, err)
		}
	}
	return ifc.Name, nil
}
