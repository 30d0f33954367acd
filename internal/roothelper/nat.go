package roothelper

import (
	"context"
	"errors"
	"fmt"
	"github.com/banger/banger/internal/atomicfile"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/banger/banger/internal/paths"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// NAT for guests lives in one nftables table that banger owns, "ip banger":
//
//	table ip banger {
//	  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//	    ip saddr 172.16.0.2 oifname != "banger0" masquerade  comment "banger masquerade 172.16.0.2 bgtap1" }
//	  chain forward { type filter hook forward priority filter; policy accept;
//	    iifname "bgtap1" accept                                  comment "banger forward-out 172.16.0.2 bgtap1"
//	    oifname "bgtap1" ct state established,related accept     comment "banger forward-return 172.16.0.2 bgtap1" }
//	}
//
// The comments (rule UserData) tie each rule to one VM, so removal deletes
// exactly that VM's rules and Cleanup can drop the whole table.
//
// Hosts whose firewall drops forwarded packets elsewhere (Docker sets the
// iptables FORWARD policy to DROP) still drop guest traffic: an accept in
// one base chain does not override a drop in another. The helper does not
// write into tables other tools own (iptables-nft would then list a table
// it cannot parse, and legacy iptables is not reachable through nftables at
// all); Status reports nftables forward chains with a drop policy so that
// doctor can tell the user to allow the bridge there, e.g. in DOCKER-USER.

const (
	natTableName    = "banger"
	postroutingName = "postrouting"
	forwardName     = "forward"

	roleMasquerade    = "masquerade"
	roleForwardOut    = "forward-out"
	roleForwardReturn = "forward-return"

	ipForwardPath = "/proc/sys/net/ipv4/ip_forward"
)

// NATStatus is the set of rules that give one guest outbound access.
type NATStatus struct {
	GuestIP netip.Addr `json:"guest_ip"`
	Tap     string     `json:"tap"`
	// Rules are rendered in nft syntax, prefixed by their chain.
	Rules []string `json:"rules"`
}

func natTable() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyIPv4, Name: natTableName}
}

func natChains(t *nftables.Table) (post, fwd *nftables.Chain) {
	accept := nftables.ChainPolicyAccept
	post = &nftables.Chain{Name: postroutingName, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource}
	fwd = &nftables.Chain{Name: forwardName, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	return post, fwd
}

type natRule struct {
	chain string
	role  string
	exprs []expr.Any
}

// natRules are the rules one guest needs.
func natRules(bridge, tap string, guest netip.Addr) []natRule {
	ip := guest.As4()
	ctMask := binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED)
	return []natRule{
		{postroutingName, roleMasquerade, []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ip[:]},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(bridge)},
			&expr.Masq{},
		}},
		{forwardName, roleForwardOut, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(tap)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}},
		{forwardName, roleForwardReturn, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(tap)},
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ctMask, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}},
	}
}

// ifname is an interface name as nftables compares it for an exact match:
// NUL-padded to IFNAMSIZ.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func natTag(role string, guest netip.Addr, tap string) string {
	return "banger " + role + " " + guest.String() + " " + tap
}

func parseNATTag(s string) (role string, guest netip.Addr, tap string, ok bool) {
	f := strings.Fields(s)
	if len(f) != 4 || f[0] != "banger" {
		return "", netip.Addr{}, "", false
	}
	ip, err := netip.ParseAddr(f[2])
	if err != nil {
		return "", netip.Addr{}, "", false
	}
	return f[1], ip, f[3], true
}

// taggedRule is a rule of banger's table with its parsed tag.
type taggedRule struct {
	rule  *nftables.Rule
	role  string
	guest netip.Addr
	tap   string
}

// listNATRules returns the tagged rules of banger's table, nothing when the
// table does not exist.
func listNATRules(c *nftables.Conn) ([]taggedRule, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("list nft chains: %w", err)
	}
	var out []taggedRule
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
			role, guest, tap, ok := parseNATTag(comment)
			if !ok {
				continue
			}
			r.Chain = ch
			out = append(out, taggedRule{rule: r, role: role, guest: guest, tap: tap})
		}
	}
	return out, nil
}

// AddNAT gives a guest outbound access through the host: masquerade for
// its address and forwarding for its tap, with IPv4 forwarding enabled.
// Rules that tie the same address to another tap, or the same tap to
// another address, are stale (a reused IP or tap) and are replaced.
func (s *Server) AddNAT(ctx context.Context, req NATRequest) (NATStatus, error) {
	if err := s.validateNAT(req); err != nil {
		return NATStatus{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enableForwarding(); err != nil {
		return NATStatus{}, err
	}
	c, err := s.ns.nft()
	if err != nil {
		return NATStatus{}, err
	}
	t := c.AddTable(natTable())
	post, fwd := natChains(t)
	c.AddChain(post)
	c.AddChain(fwd)
	if err := c.Flush(); err != nil {
		return NATStatus{}, fmt.Errorf("create nft table ip %s: %w", natTableName, err)
	}
	existing, err := listNATRules(c)
	if err != nil {
		return NATStatus{}, err
	}
	have := map[string]bool{}
	for _, r := range existing {
		sameIP, sameTap := r.guest == req.GuestIP, r.tap == req.Tap
		switch {
		case sameIP && sameTap && !have[r.role]:
			have[r.role] = true
		case sameIP || sameTap:
			if err := c.DelRule(r.rule); err != nil {
				return NATStatus{}, fmt.Errorf("remove stale nat rule %q: %w", natTag(r.role, r.guest, r.tap), err)
			}
		}
	}
	chains := map[string]*nftables.Chain{postroutingName: post, forwardName: fwd}
	for _, r := range natRules(s.cfg.Bridge, req.Tap, req.GuestIP) {
		if have[r.role] {
			continue
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: chains[r.chain], Exprs: r.exprs,
			UserData: userdata.AppendString(nil, userdata.TypeComment, natTag(r.role, req.GuestIP, req.Tap))})
	}
	if err := c.Flush(); err != nil {
		return NATStatus{}, fmt.Errorf("add nat rules for %s on %q: %w", req.GuestIP, req.Tap, err)
	}
	all, err := natStatus(c)
	if err != nil {
		return NATStatus{}, err
	}
	for _, n := range all {
		if n.GuestIP == req.GuestIP && n.Tap == req.Tap {
			return n, nil
		}
	}
	return NATStatus{}, fmt.Errorf("nat rules for %s on %q are missing right after adding them", req.GuestIP, req.Tap)
}

// RemoveNAT deletes the rules AddNAT made for exactly this guest and tap.
// Forwarding stays enabled: other guests may need it; Cleanup restores it.
func (s *Server) RemoveNAT(ctx context.Context, req NATRequest) error {
	if err := s.validateNAT(req); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.ns.nft()
	if err != nil {
		return err
	}
	existing, err := listNATRules(c)
	if err != nil {
		return err
	}
	for _, r := range existing {
		if r.guest == req.GuestIP && r.tap == req.Tap {
			if err := c.DelRule(r.rule); err != nil {
				return fmt.Errorf("remove nat rule %q: %w", natTag(r.role, r.guest, r.tap), err)
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove nat rules for %s on %q: %w", req.GuestIP, req.Tap, err)
	}
	return nil
}

func (s *Server) validateNAT(req NATRequest) error {
	if err := ValidateTap(req.Tap); err != nil {
		return err
	}
	return ValidateGuestIP(s.cfg.CIDR, req.GuestIP)
}

// natStatus groups banger's rules by guest, sorted by address.
func natStatus(c *nftables.Conn) ([]NATStatus, error) {
	rules, err := listNATRules(c)
	if err != nil {
		return nil, err
	}
	type key struct {
		ip  netip.Addr
		tap string
	}
	byVM := map[key]*NATStatus{}
	var out []*NATStatus
	for _, r := range rules {
		k := key{r.guest, r.tap}
		n := byVM[k]
		if n == nil {
			n = &NATStatus{GuestIP: r.guest, Tap: r.tap}
			byVM[k] = n
			out = append(out, n)
		}
		n.Rules = append(n.Rules, r.rule.Chain.Name+": "+ruleText(r.rule.Exprs))
	}
	res := make([]NATStatus, 0, len(out))
	for _, n := range out {
		slices.Sort(n.Rules)
		res = append(res, *n)
	}
	slices.SortFunc(res, func(a, b NATStatus) int {
		if c := a.GuestIP.Compare(b.GuestIP); c != 0 {
			return c
		}
		return strings.Compare(a.Tap, b.Tap)
	})
	return res, nil
}

// forwardDropChains lists IPv4-reaching forward chains of other tables
// whose policy drops: guest traffic is dropped there whatever banger's
// table accepts.
func forwardDropChains(c *nftables.Conn) ([]string, error) {
	chains, err := c.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list nft chains: %w", err)
	}
	var out []string
	for _, ch := range chains {
		fam := ch.Table.Family
		if fam != nftables.TableFamilyIPv4 && fam != nftables.TableFamilyINet {
			continue
		}
		if ch.Table.Name == natTableName && fam == nftables.TableFamilyIPv4 {
			continue
		}
		if ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward {
			continue
		}
		if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
			famName := "ip"
			if fam == nftables.TableFamilyINet {
				famName = "inet"
			}
			out = append(out, famName+" "+ch.Table.Name+" "+ch.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// deleteNATTable drops banger's table with everything in it.
func deleteNATTable(ns netNS) error {
	c, err := ns.nft()
	if err != nil {
		return err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("list nft tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == natTableName {
			c.DelTable(t)
			if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("delete nft table ip %s: %w", natTableName, err)
			}
		}
	}
	return nil
}

func forwardRecord(l paths.Layout) string { return filepath.Join(l.HelperDir, "ip_forward.orig") }

// enableForwarding turns on IPv4 forwarding, first recording the value it
// found so that Cleanup can put it back. Only the first value is kept: a
// later "1" is the helper's own doing.
func (s *Server) enableForwarding() error {
	cur, err := s.ns.readSysctl(ipForwardPath)
	if err != nil {
		return err
	}
	rec := forwardRecord(s.cfg.Layout)
	if _, err := os.Lstat(rec); errors.Is(err, fs.ErrNotExist) {
		if err := atomicfile.Write(rec, []byte(cur+"\n"), 0o600); err != nil {
			return fmt.Errorf("record original ip_forward: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("record original ip_forward: %w", err)
	}
	if cur == "1" {
		return nil
	}
	if err := s.ns.writeSysctl(ipForwardPath, "1"); err != nil {
		return err
	}
	s.log.Info("enabled ip forwarding", "was", cur, "ns", s.ns.String())
	return nil
}

// restoreForwarding puts back the ip_forward value recorded before the
// helper first enabled it, then forgets the record.
func restoreForwarding(ns netNS, l paths.Layout) error {
	if l.HelperDir == "" {
		return nil
	}
	rec := forwardRecord(l)
	b, err := os.ReadFile(rec)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read ip_forward record: %w", err)
	}
	v := strings.TrimSpace(string(b))
	if v != "0" && v != "1" {
		return fmt.Errorf("ip_forward record %s holds %q, not 0 or 1; set net.ipv4.ip_forward yourself and remove it", rec, v)
	}
	if err := ns.writeSysctl(ipForwardPath, v); err != nil {
		return err
	}
	if err := os.Remove(rec); err != nil {
		return fmt.Errorf("remove ip_forward record: %w", err)
	}
	return nil
}
