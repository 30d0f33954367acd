package roothelper

// Tests against the kernel. Each one creates its own network namespace and
// points the helper at it (Config.NetNS); nothing is made in the host's
// namespace, and no traffic is sent.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
)

func TestNetNSBridge(t *testing.T) {
	s, cfg := nsServer(t)
	h := nsHandle(t, cfg.NetNS)
	ctx := t.Context()
	want := BridgeStatus{Name: "banger-t0", Kind: "bridge", Up: true, Addrs: []netip.Prefix{netip.MustParsePrefix("172.16.0.1/24")}}

	t.Run("create", func(t *testing.T) {
		got, err := s.EnsureBridge(ctx, "banger-t0")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, cmpNetip); diff != "" {
			t.Errorf("status (-want +got):\n%s", diff)
		}
		l, err := h.LinkByName("banger-t0")
		if err != nil {
			t.Fatal(err)
		}
		if l.Type() != "bridge" || l.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("link %s flags %v, want an up bridge", l.Type(), l.Attrs().Flags)
		}
		if _, err := netlink.LinkByName("banger-t0"); !isLinkNotFound(err) {
			t.Errorf("the host namespace has a banger-t0: %v", err)
		}
	})
	t.Run("idempotent", func(t *testing.T) {
		for range 2 {
			got, err := s.EnsureBridge(ctx, "banger-t0")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got, cmpNetip); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		}
	})
	t.Run("repairs", func(t *testing.T) {
		l, err := h.LinkByName("banger-t0")
		if err != nil {
			t.Fatal(err)
		}
		stale, _ := netlink.ParseAddr("10.9.0.1/24")
		mine, _ := netlink.ParseAddr("172.16.0.1/24")
		for _, err := range []error{h.AddrAdd(l, stale), h.AddrDel(l, mine), h.LinkSetDown(l)} {
			if err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.EnsureBridge(ctx, "banger-t0")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, cmpNetip); diff != "" {
			t.Errorf("status (-want +got):\n%s", diff)
		}
	})
	t.Run("only the configured bridge", func(t *testing.T) {
		_, err := s.EnsureBridge(ctx, "banger-t1")
		if !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("ensure another bridge: %v, want bad_request", err)
		}
	})
	t.Run("delete", func(t *testing.T) {
		for range 2 {
			if err := s.DeleteBridge(ctx, "banger-t0"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := h.LinkByName("banger-t0"); !isLinkNotFound(err) {
			t.Errorf("bridge still there: %v", err)
		}
	})
	t.Run("delete stray bridge", func(t *testing.T) {
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "banger-old"}}); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteBridge(ctx, "banger-old"); err != nil {
			t.Fatal(err)
		}
		if _, err := h.LinkByName("banger-old"); !isLinkNotFound(err) {
			t.Errorf("bridge still there: %v", err)
		}
	})
	t.Run("name taken by another kind", func(t *testing.T) {
		other := addVeth(t, h, "banger-t0", "peer0")
		defer h.LinkDel(other)
		if _, err := s.EnsureBridge(ctx, "banger-t0"); !errors.Is(err, api.ErrConflict) {
			t.Errorf("ensure over a veth: %v, want conflict", err)
		}
		if err := s.DeleteBridge(ctx, "banger-t0"); !errors.Is(err, api.ErrConflict) {
			t.Errorf("delete a veth: %v, want conflict", err)
		}
		if _, err := h.LinkByName("banger-t0"); err != nil {
			t.Errorf("the veth is gone: %v", err)
		}
	})
}

func TestNetNSTap(t *testing.T) {
	requireTun(t)
	s, cfg := nsServer(t)
	h := nsHandle(t, cfg.NetNS)
	ctx := t.Context()
	want := TapStatus{Name: "bgtap1", Kind: "tuntap", Owner: 4242, Group: 4243, Master: "banger-t0", Up: true}

	t.Run("create", func(t *testing.T) {
		for range 2 { // the second call finds it in place
			got, err := s.CreateTap(ctx, "bgtap1")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		}
		l, err := h.LinkByName("bgtap1")
		if err != nil {
			t.Fatal(err)
		}
		tt, ok := l.(*netlink.Tuntap)
		if !ok {
			t.Fatalf("bgtap1 is a %T", l)
		}
		br, err := h.LinkByName("banger-t0")
		if err != nil {
			t.Fatal(err)
		}
		got := []any{tt.Mode, tt.Owner, tt.Group, tt.NonPersist, tt.Flags & netlink.TUNTAP_MULTI_QUEUE, tt.MasterIndex == br.Attrs().Index}
		wantAttrs := []any{netlink.TUNTAP_MODE_TAP, uint32(4242), uint32(4243), false, netlink.TuntapFlag(0), true}
		if diff := cmp.Diff(wantAttrs, got); diff != "" {
			t.Errorf("mode, owner, group, non-persist, multiqueue, enslaved (-want +got):\n%s", diff)
		}
	})
	t.Run("owner can attach, others cannot", func(t *testing.T) {
		ip, err := exec.LookPath("ip")
		if err != nil {
			t.Fatal(err)
		}
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		ns := strings.TrimPrefix(cfg.NetNS, "/run/netns/")
		for _, c := range []struct {
			uid, gid int
			want     string
		}{
			{4242, 4243, "ok"},
			{4244, 4244, "operation not permitted"},
			{4244, 4243, "operation not permitted"}, // both owner and group must match
		} {
			cmd := exec.CommandContext(ctx, ip, "netns", "exec", ns, self)
			cmd.Env = []string{envChild + "=opentap", "BANGER_TEST_TAP=bgtap1",
				"BANGER_TEST_UID=" + strconv.Itoa(c.uid), "BANGER_TEST_GID=" + strconv.Itoa(c.gid)}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v: %s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != c.want {
				t.Errorf("uid %d gid %d attaching: %q, want %q", c.uid, c.gid, got, c.want)
			}
		}
	})
	t.Run("other owner", func(t *testing.T) {
		other := cfg
		other.OwnerUID = 5000
		s2, err := New(other)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if _, err := s2.CreateTap(ctx, "bgtap1"); !errors.Is(err, api.ErrConflict) {
			t.Errorf("create over another owner's tap: %v, want conflict", err)
		}
	})
	t.Run("name taken by another kind", func(t *testing.T) {
		other := addVeth(t, h, "bgtap2", "peer0")
		defer h.LinkDel(other)
		if _, err := s.CreateTap(ctx, "bgtap2"); !errors.Is(err, api.ErrConflict) {
			t.Errorf("create over a veth: %v, want conflict", err)
		}
		if err := s.DeleteTap(ctx, "bgtap2"); !errors.Is(err, api.ErrConflict) {
			t.Errorf("delete a veth: %v, want conflict", err)
		}
	})
	t.Run("hostile name", func(t *testing.T) {
		if _, err := s.CreateTap(ctx, "eth0"); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("create eth0: %v, want bad_request", err)
		}
		if err := s.DeleteTap(ctx, "lo"); !errors.Is(err, api.ErrBadRequest) {
			t.Errorf("delete lo: %v, want bad_request", err)
		}
	})
	t.Run("delete", func(t *testing.T) {
		for range 2 {
			if err := s.DeleteTap(ctx, "bgtap1"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := h.LinkByName("bgtap1"); !isLinkNotFound(err) {
			t.Errorf("tap still there: %v", err)
		}
	})
}

func TestNetNSNAT(t *testing.T) {
	s, cfg := nsServer(t)
	c := nsNFT(t, cfg.NetNS)
	ctx := t.Context()
	setForwarding(t, s, "0")
	ip2, ip3 := netip.MustParseAddr("172.16.0.2"), netip.MustParseAddr("172.16.0.3")
	vm := func(ip netip.Addr, tap string) NATStatus {
		return NATStatus{GuestIP: ip, Tap: tap, Rules: []string{
			`forward: iifname "` + tap + `" accept`,
			`forward: oifname "` + tap + `" ct state established,related accept`,
			`postrouting: ip saddr ` + ip.String() + ` oifname != "banger-t0" masquerade`,
		}}
	}
	checkNAT := func(t *testing.T, want ...NATStatus) {
		t.Helper()
		st, err := s.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want == nil {
			want = []NATStatus{}
		}
		if diff := cmp.Diff(want, st.NAT, cmpNetip); diff != "" {
			t.Errorf("nat (-want +got):\n%s", diff)
		}
	}

	t.Run("add", func(t *testing.T) {
		for range 2 {
			got, err := s.AddNAT(ctx, NATRequest{Tap: "bgtap1", GuestIP: ip2})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(vm(ip2, "bgtap1"), got, cmpNetip); diff != "" {
				t.Errorf("add (-want +got):\n%s", diff)
			}
		}
		checkNAT(t, vm(ip2, "bgtap1"))
		if v := forwarding(t, s); v != "1" {
			t.Errorf("ip_forward = %s, want 1", v)
		}
		if b, err := os.ReadFile(forwardRecord(cfg.Layout)); err != nil || string(b) != "0\n" {
			t.Errorf("ip_forward record = %q, %v; want \"0\\n\"", b, err)
		}
	})
	t.Run("kernel view", func(t *testing.T) {
		// Read back with the test's own connection, not through ruleText.
		table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "banger"}
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			t.Fatal(err)
		}
		hooks := map[string]string{}
		for _, ch := range chains {
			if ch.Table.Name == "banger" {
				hooks[ch.Name] = string(ch.Type) + "/" + strconv.Itoa(int(*ch.Hooknum)) + "/" + strconv.Itoa(int(*ch.Priority))
			}
		}
		wantHooks := map[string]string{"postrouting": "nat/4/100", "forward": "filter/2/0"}
		if diff := cmp.Diff(wantHooks, hooks); diff != "" {
			t.Errorf("chains (-want +got):\n%s", diff)
		}
		rules, err := c.GetRules(table, &nftables.Chain{Name: "postrouting", Table: table})
		if err != nil {
			t.Fatal(err)
		}
		if len(rules) != 1 {
			t.Fatalf("%d postrouting rules, want 1", len(rules))
		}
		var saddr []byte
		masq := false
		for i, e := range rules[0].Exprs {
			if p, ok := e.(*expr.Payload); ok && p.Offset == 12 && p.Len == 4 && i+1 < len(rules[0].Exprs) {
				saddr = rules[0].Exprs[i+1].(*expr.Cmp).Data
			}
			if _, ok := e.(*expr.Masq); ok {
				masq = true
			}
		}
		if !masq || !cmp.Equal(saddr, []byte{172, 16, 0, 2}) {
			t.Errorf("postrouting rule masq=%v saddr=%v, want masquerade for 172.16.0.2", masq, saddr)
		}
		if tag, _ := userdata.GetString(rules[0].UserData, userdata.TypeComment); tag != "banger masquerade 172.16.0.2 bgtap1" {
			t.Errorf("rule tag %q", tag)
		}
		// nft's own reading of the same table, when nft is installed.
		if nft, err := exec.LookPath("nft"); err == nil {
			out, err := exec.CommandContext(ctx, "ip", "netns", "exec", strings.TrimPrefix(cfg.NetNS, "/run/netns/"),
				nft, "list", "table", "ip", "banger").CombinedOutput()
			if err != nil {
				t.Fatalf("nft list: %v: %s", err, out)
			}
			for _, want := range []string{
				`ip saddr 172.16.0.2 oifname != "banger-t0" masquerade comment "banger masquerade 172.16.0.2 bgtap1"`,
				`iifname "bgtap1" accept comment "banger forward-out 172.16.0.2 bgtap1"`,
				`oifname "bgtap1" ct state established,related accept comment "banger forward-return 172.16.0.2 bgtap1"`,
			} {
				if !strings.Contains(string(out), want) {
					t.Errorf("nft list table ip banger lacks %q:\n%s", want, out)
				}
			}
		} else {
			t.Log("nft not installed; skipped nft's reading of the table")
		}
	})
	t.Run("second guest", func(t *testing.T) {
		if _, err := s.AddNAT(ctx, NATRequest{Tap: "bgtap2", GuestIP: ip3}); err != nil {
			t.Fatal(err)
		}
		checkNAT(t, vm(ip2, "bgtap1"), vm(ip3, "bgtap2"))
	})
	t.Run("reused address replaces stale rules", func(t *testing.T) {
		if _, err := s.AddNAT(ctx, NATRequest{Tap: "bgtap3", GuestIP: ip2}); err != nil {
			t.Fatal(err)
		}
		checkNAT(t, vm(ip2, "bgtap3"), vm(ip3, "bgtap2"))
	})
	t.Run("remove exactly one guest", func(t *testing.T) {
		for range 2 {
			if err := s.RemoveNAT(ctx, NATRequest{Tap: "bgtap2", GuestIP: ip3}); err != nil {
				t.Fatal(err)
			}
		}
		// Same address, other tap: not this VM's rules.
		if err := s.RemoveNAT(ctx, NATRequest{Tap: "bgtap1", GuestIP: ip2}); err != nil {
			t.Fatal(err)
		}
		checkNAT(t, vm(ip2, "bgtap3"))
		if err := s.RemoveNAT(ctx, NATRequest{Tap: "bgtap3", GuestIP: ip2}); err != nil {
			t.Fatal(err)
		}
		checkNAT(t)
		if v := forwarding(t, s); v != "1" {
			t.Errorf("ip_forward = %s after remove, want it left at 1", v)
		}
	})
	t.Run("hostile", func(t *testing.T) {
		for _, req := range []NATRequest{
			{Tap: "bgtap1", GuestIP: netip.MustParseAddr("172.16.0.1")},
			{Tap: "bgtap1", GuestIP: netip.MustParseAddr("172.16.0.255")},
			{Tap: "bgtap1", GuestIP: netip.MustParseAddr("10.0.0.2")},
			{Tap: "bgtap1", GuestIP: netip.MustParseAddr("fd00::2")},
			{Tap: "bgtap1"},
			{Tap: "eth0", GuestIP: ip2},
		} {
			if _, err := s.AddNAT(ctx, req); !errors.Is(err, api.ErrBadRequest) {
				t.Errorf("add %+v: %v, want bad_request", req, err)
			}
		}
		checkNAT(t)
	})
	t.Run("forward drop elsewhere is reported", func(t *testing.T) {
		drop := nftables.ChainPolicyDrop
		filter := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"})
		c.AddChain(&nftables.Chain{Name: "FORWARD", Table: filter, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
		c.AddChain(&nftables.Chain{Name: "INPUT", Table: filter, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &drop})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		st, err := s.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"ip filter FORWARD"}, st.ForwardDrop); diff != "" {
			t.Errorf("forward drop (-want +got):\n%s", diff)
		}
	})
	t.Run("remove without table", func(t *testing.T) {
		if err := Cleanup(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveNAT(ctx, NATRequest{Tap: "bgtap1", GuestIP: ip2}); err != nil {
			t.Errorf("remove with no table: %v", err)
		}
	})
}

func TestNetNSCleanup(t *testing.T) {
	requireTun(t)
	s, cfg := nsServer(t)
	h := nsHandle(t, cfg.NetNS)
	c := nsNFT(t, cfg.NetNS)
	ctx := t.Context()
	setForwarding(t, s, "0")

	for _, tap := range []string{"bgtap1", "bgtap2"} {
		if _, err := s.CreateTap(ctx, tap); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.AddNAT(ctx, NATRequest{Tap: "bgtap1", GuestIP: netip.MustParseAddr("172.16.0.2")}); err != nil {
		t.Fatal(err)
	}
	// Leftovers and bystanders: a bridge from an older config goes, links
	// and tables that are not banger's stay.
	for _, name := range []string{"banger-old", "br0"} {
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	addVeth(t, h, "bangerveth", "veth0") // named like a bridge, but not one
	c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "other"})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}

	for i := range 2 {
		if err := Cleanup(ctx, cfg); err != nil {
			t.Fatalf("cleanup #%d: %v", i+1, err)
		}
	}
	if diff := cmp.Diff([]string{"bangerveth", "br0", "veth0"}, linkNames(t, h)); diff != "" {
		t.Errorf("links left (-want +got):\n%s", diff)
	}
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tb := range tables {
		names = append(names, tb.Name)
	}
	if diff := cmp.Diff([]string{"other"}, names); diff != "" {
		t.Errorf("nft tables left (-want +got):\n%s", diff)
	}
	if v := forwarding(t, s); v != "0" {
		t.Errorf("ip_forward = %s, want the original 0", v)
	}
	if _, err := os.Stat(forwardRecord(cfg.Layout)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ip_forward record still there: %v", err)
	}

	t.Run("keeps going past a failure", func(t *testing.T) {
		other := addVeth(t, h, "banger-t0", "peer1")
		if err := s.ns.do(func() error { return makeTap("bgtap5", cfg.OwnerUID, cfg.OwnerGID) }); err != nil {
			t.Fatal(err)
		}
		err := Cleanup(ctx, cfg)
		if !errors.Is(err, api.ErrConflict) {
			t.Errorf("cleanup with a veth named like the bridge: %v, want conflict", err)
		}
		if _, err := h.LinkByName("bgtap5"); !isLinkNotFound(err) {
			t.Errorf("cleanup stopped before the tap: %v", err)
		}
		if err := h.LinkDel(other); err != nil {
			t.Fatal(err)
		}
	})
}

// TestNetNSOverSocket runs the operations through the real socket and the
// typed client, as the daemon will.
func TestNetNSOverSocket(t *testing.T) {
	requireTun(t)
	cfg := testConfig(t)
	cfg.NetNS = newTestNetNS(t)
	nsNFT(t, cfg.NetNS)
	logs := &lockedWriter{}
	cfg.Log = slog.New(slog.NewJSONHandler(logs, nil))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	setForwarding(t, s, "0")
	ln, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, time.Second) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	cl := NewClient(cfg.Layout.HelperSocket())
	guest := netip.MustParseAddr("172.16.0.7")
	br, err := cl.EnsureBridge(ctx, "banger-t0")
	if err != nil {
		t.Fatal(err)
	}
	tap, err := cl.CreateTap(ctx, "bgtap7")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.AddNAT(ctx, "bgtap7", guest); err != nil {
		t.Fatal(err)
	}
	st, err := cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := Status{
		Bridge: &br,
		Taps:   []TapStatus{tap},
		NAT: []NATStatus{{GuestIP: guest, Tap: "bgtap7", Rules: []string{
			`forward: iifname "bgtap7" accept`,
			`forward: oifname "bgtap7" ct state established,related accept`,
			`postrouting: ip saddr 172.16.0.7 oifname != "banger-t0" masquerade`,
		}}},
		IPForward: true,
	}
	if diff := cmp.Diff(want, st, cmpNetip); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if err := cl.RemoveNAT(ctx, "bgtap7", guest); err != nil {
		t.Fatal(err)
	}
	if err := cl.DeleteTap(ctx, "bgtap7"); err != nil {
		t.Fatal(err)
	}
	if err := cl.DeleteBridge(ctx, "banger-t0"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateTap(ctx, "bgtap7\n"); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("hostile name over the socket: %v, want bad_request", err)
	}
	st, err = cl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Status{Taps: []TapStatus{}, NAT: []NATStatus{}, IPForward: true}, st, cmpNetip); diff != "" {
		t.Errorf("status after teardown (-want +got):\n%s", diff)
	}

	var got []string
	for _, op := range []string{"bridge.ensure", "tap.create", "nat.add", "status", "nat.remove", "tap.delete", "bridge.delete"} {
		for _, r := range logs.records(t, op) {
			if id, _ := r["op_id"].(string); id == "" {
				t.Errorf("%s logged without op_id: %v", op, r)
			}
			line := op + " uid=" + jsonNum(r["uid"])
			for _, k := range []string{"name", "tap", "guest_ip"} {
				if v, ok := r[k]; ok {
					line += fmt.Sprintf(" %s=%q", k, v)
				}
			}
			if _, ok := r["err"]; ok {
				line += " failed"
			}
			got = append(got, line)
		}
	}
	wantLog := []string{
		`bridge.ensure uid=0 name="banger-t0"`,
		`tap.create uid=0 name="bgtap7"`,
		`tap.create uid=0 name="bgtap7\n" failed`,
		`nat.add uid=0 tap="bgtap7" guest_ip="172.16.0.7"`,
		`status uid=0`,
		`status uid=0`,
		`nat.remove uid=0 tap="bgtap7" guest_ip="172.16.0.7"`,
		`tap.delete uid=0 name="bgtap7"`,
		`bridge.delete uid=0 name="banger-t0"`,
	}
	if diff := cmp.Diff(wantLog, got); diff != "" {
		t.Errorf("operation log (-want +got):\n%s", diff)
	}
}

// addVeth makes a link that is neither a bridge nor a tap (veth is the
// kind every kernel config we meet has).
func addVeth(t *testing.T, h *netlink.Handle, name, peer string) netlink.Link {
	t.Helper()
	l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}
	if err := h.LinkAdd(l); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	return l
}

var cmpNetip = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})
