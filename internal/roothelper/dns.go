package roothelper

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/banger/banger/internal/api"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Guests are given the bridge address as their name server, but bangerd
// is unprivileged and serves DNS on a high port of that address. Two rules
// in banger's own table send what the guests ask on port 53 there:
//
//	table ip banger {
//	  chain prerouting { type nat hook prerouting priority dstnat; policy accept;
//	    iifname "banger0" ip daddr 172.16.0.1 udp dport 53 dnat to 172.16.0.1:42069  comment "banger dns-redirect udp 172.16.0.1:42069 banger0"
//	    iifname "banger0" ip daddr 172.16.0.1 tcp dport 53 dnat to 172.16.0.1:42069  comment "banger dns-redirect tcp 172.16.0.1:42069 banger0" }
//	}
//
// The tag has five fields, so the NAT code (four) never takes these rules
// for a guest's. Cleanup drops them with the table.

// Routes of the DNS redirect.
const (
	RouteDNSRedirect   = "/v1/dns/redirect"
	RouteDNSUnredirect = "/v1/dns/unredirect"
)

const (
	preroutingName  = "prerouting"
	roleDNSRedirect = "dns-redirect"
	dnsPort         = 53
)

// DNSRedirectRequest is the body of the redirect route: the daemon's DNS
// port on the bridge address.
type DNSRedirectRequest struct {
	Port int `json:"port"`
}

type dnsUnredirectRequest struct{}

// DNSRedirectStatus lists the redirects in place, in nft syntax prefixed by
// their chain, sorted.
type DNSRedirectStatus struct {
	Rules []string `json:"rules"`
}

func (r DNSRedirectRequest) logAttrs() []any { return []any{"port", r.Port} }
func (dnsUnredirectRequest) logAttrs() []any { return nil }

// RedirectDNS makes guests' queries to the bridge address on port 53 (UDP
// and TCP, arriving on the bridge) reach the same address on req.Port.
// Redirects to another port, or for another bridge or address, are stale
// and removed. Calling it again changes nothing.
func (s *Server) RedirectDNS(ctx context.Context, req DNSRedirectRequest) (DNSRedirectStatus, error) {
	if req.Port < 1024 || req.Port > 65535 {
		return DNSRedirectStatus{}, api.Errorf(api.CodeBadRequest, "dns port %d: must be between 1024 and 65535 (the daemon's unprivileged port)", req.Port)
	}
	port := uint16(req.Port)
	addr := s.cfg.CIDR.Addr()
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.ns.nft()
	if err != nil {
		return DNSRedirectStatus{}, err
	}
	t := c.AddTable(natTable())
	pre := preroutingChain(t)
	c.AddChain(pre)
	if err := c.Flush(); err != nil {
		return DNSRedirectStatus{}, fmt.Errorf("create nft chain ip %s %s: %w", natTableName, preroutingName, err)
	}
	existing, err := listDNSRules(c)
	if err != nil {
		return DNSRedirectStatus{}, err
	}
	protos := []string{"udp", "tcp"}
	have := map[string]bool{}
	for _, r := range existing {
		want := r.port == port && r.addr == addr && r.bridge == s.cfg.Bridge && r.rule.Chain.Name == preroutingName
		if want && !have[r.proto] {
			have[r.proto] = true
			continue
		}
		if err := c.DelRule(r.rule); err != nil {
			return DNSRedirectStatus{}, fmt.Errorf("remove stale dns redirect %q: %w", r.tag, err)
		}
	}
	for _, proto := range protos {
		if have[proto] {
			continue
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: dnsRedirectExprs(s.cfg.Bridge, addr, proto, port),
			UserData: userdata.AppendString(nil, userdata.TypeComment, dnsTag(proto, addr, port, s.cfg.Bridge))})
	}
	if err := c.Flush(); err != nil {
		return DNSRedirectStatus{}, fmt.Errorf("redirect dns %s:53 to port %d: %w", addr, port, err)
	}
	s.log.Info("dns redirect", "addr", addr.String(), "port", port, "bridge", s.cfg.Bridge, "ns", s.ns.String())
	return dnsStatus(c)
}

// UnredirectDNS removes every DNS redirect, whatever its port. The chain
// stays (empty); Cleanup removes it with the table.
func (s *Server) UnredirectDNS(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.ns.nft()
	if err != nil {
		return err
	}
	existing, err := listDNSRules(c)
	if err != nil {
		return err
	}
	for _, r := range existing {
		if err := c.DelRule(r.rule); err != nil {
			return fmt.Errorf("remove dns redirect %q: %w", r.tag, err)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove dns redirects: %w", err)
	}
	return nil
}

func preroutingChain(t *nftables.Table) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{Name: preroutingName, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept}
}

// dnsRedirectExprs: iifname BRIDGE ip daddr ADDR PROTO dport 53 dnat to ADDR:PORT.
func dnsRedirectExprs(bridge string, addr netip.Addr, proto string, port uint16) []expr.Any {
	ip := addr.As4()
	l4 := byte(unix.IPPROTO_UDP)
	if proto == "tcp" {
		l4 = unix.IPPROTO_TCP
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(bridge)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ip[:]},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{l4}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(dnsPort)},
		&expr.Immediate{Register: 1, Data: ip[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

func dnsTag(proto string, addr netip.Addr, port uint16, bridge string) string {
	return strings.Join([]string{"banger", roleDNSRedirect, proto, netip.AddrPortFrom(addr, port).String(), bridge}, " ")
}

// dnsRule is a DNS redirect of banger's table with its parsed tag.
type dnsRule struct {
	rule   *nftables.Rule
	tag    string
	proto  string
	addr   netip.Addr
	port   uint16
	bridge string
}

func parseDNSTag(s string) (dnsRule, bool) {
	f := strings.Fields(s)
	if len(f) != 5 || f[0] != "banger" || f[1] != roleDNSRedirect || (f[2] != "udp" && f[2] != "tcp") {
		return dnsRule{}, false
	}
	ap, err := netip.ParseAddrPort(f[3])
	if err != nil {
		return dnsRule{}, false
	}
	return dnsRule{tag: s, proto: f[2], addr: ap.Addr(), port: ap.Port(), bridge: f[4]}, true
}

// listDNSRules returns the DNS redirects of banger's table, in any of its
// chains; nothing when the table does not exist.
func listDNSRules(c *nftables.Conn) ([]dnsRule, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("list nft chains: %w", err)
	}
	var out []dnsRule
	for _, ch := range chains {
		if ch.Table.Name != natTableName {
			continue
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			return nil, fmt.Errorf("list rules of ip %s %s: %w", natTableName, ch.Name, err)
		}
		for _, r := range rules {
			comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			d, ok := parseDNSTag(comment)
			if !ok {
				continue
			}
			r.Chain = ch
			d.rule = r
			out = append(out, d)
		}
	}
	return out, nil
}

// dnsStatus describes the redirects in place from their tags.
func dnsStatus(c *nftables.Conn) (DNSRedirectStatus, error) {
	rules, err := listDNSRules(c)
	if err != nil {
		return DNSRedirectStatus{}, err
	}
	st := DNSRedirectStatus{Rules: []string{}}
	for _, r := range rules {
		st.Rules = append(st.Rules, r.rule.Chain.Name+": iifname "+strconv.Quote(r.bridge)+" ip daddr "+r.addr.String()+" "+
			r.proto+" dport 53 dnat to "+netip.AddrPortFrom(r.addr, r.port).String())
	}
	slices.Sort(st.Rules)
	return st, nil
}
