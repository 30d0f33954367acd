package roothelper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/banger/banger/internal/api"
	"github.com/banger/banger/internal/dns"
	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Refused before anything runs: no privilege needed.
func TestDNSHandlerRejects(t *testing.T) {
	s, err := New(testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tt := range []struct {
		name, path, body, msg string
	}{
		{"privileged port", RouteDNSRedirect, `{"port":53}`, "between 1024 and 65535"},
		{"port 1023", RouteDNSRedirect, `{"port":1023}`, "between 1024 and 65535"},
		{"port too big", RouteDNSRedirect, `{"port":65536}`, "between 1024 and 65535"},
		{"no port", RouteDNSRedirect, `{}`, "between 1024 and 65535"},
		{"redirect unknown field", RouteDNSRedirect, `{"port":42069,"addr":"0.0.0.0"}`, "unknown field"},
		{"unredirect unknown field", RouteDNSUnredirect, `{"port":42069}`, "unknown field"},
		{"sync other bridge", RouteResolverSync, `{"bridge":"banger9","dns_addr":"127.0.0.1:42069"}`, "not the configured bridge"},
		{"sync hostile bridge", RouteResolverSync, `{"bridge":"eth0","dns_addr":"127.0.0.1:42069"}`, "not a banger bridge name"},
		{"sync no addr", RouteResolverSync, `{"bridge":"banger-t0"}`, "dns address is missing"},
		{"sync no port", RouteResolverSync, `{"bridge":"banger-t0","dns_addr":"127.0.0.1"}`, "bad request body"},
		{"sync port 0", RouteResolverSync, `{"bridge":"banger-t0","dns_addr":"127.0.0.1:0"}`, "needs a port"},
		{"sync foreign addr", RouteResolverSync, `{"bridge":"banger-t0","dns_addr":"8.8.8.8:53"}`, "loopback address or the bridge address"},
		{"sync guest addr", RouteResolverSync, `{"bridge":"banger-t0","dns_addr":"172.16.0.2:42069"}`, "loopback address or the bridge address"},
		{"sync mapped loopback", RouteResolverSync, `{"bridge":"banger-t0","dns_addr":"[::ffff:127.0.0.1]:42069"}`, "plain IPv4 or IPv6"},
		{"sync zoned", RouteResolverSync, `{"bridge":"banger-t0","dns_addr":"[fe80::1%lo]:42069"}`, "plain IPv4 or IPv6"},
		{"sync unknown field", RouteResolverSync, `{"bridge":"banger-t0","dns_addr":"127.0.0.1:42069","domain":"~."}`, "unknown field"},
		{"clear other bridge", RouteResolverClear, `{"bridge":"banger9"}`, "not the configured bridge"},
		{"clear empty", RouteResolverClear, ``, "not a banger bridge name"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, httptest.NewRequest("POST", tt.path, strings.NewReader(tt.body)))
			var e api.Error
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if rec.Code != 400 || e.Code != api.CodeBadRequest || !strings.Contains(e.Message, tt.msg) {
				t.Errorf("got %d %s %q, want 400 bad_request containing %q", rec.Code, e.Code, e.Message, tt.msg)
			}
		})
	}
}

func TestDNSTagIsNoNATTag(t *testing.T) {
	tag := dnsTag("udp", netip.MustParseAddr("172.16.0.1"), 42069, "banger0")
	if _, _, _, ok := parseNATTag(tag); ok {
		t.Errorf("the NAT code would take %q for a guest's rule", tag)
	}
	d, ok := parseDNSTag(tag)
	if !ok || d.proto != "udp" || d.addr != netip.MustParseAddr("172.16.0.1") || d.port != 42069 || d.bridge != "banger0" {
		t.Errorf("parse %q = %+v, %v", tag, d, ok)
	}
	if _, ok := parseDNSTag(natTag(roleMasquerade, netip.MustParseAddr("172.16.0.2"), "bgtap1")); ok {
		t.Error("a NAT tag parses as a DNS redirect")
	}
}

func dnsWant(port int) DNSRedirectStatus {
	p := strconv.Itoa(port)
	return DNSRedirectStatus{Rules: []string{
		`prerouting: iifname "banger-t0" ip daddr 172.16.0.1 tcp dport 53 dnat to 172.16.0.1:` + p,
		`prerouting: iifname "banger-t0" ip daddr 172.16.0.1 udp dport 53 dnat to 172.16.0.1:` + p,
	}}
}

func TestNetNSDNSRedirect(t *testing.T) {
	s, cfg := nsServer(t)
	c := nsNFT(t, cfg.NetNS)
	ctx := t.Context()
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "banger"}
	current := func(t *testing.T) DNSRedirectStatus {
		t.Helper()
		st, err := dnsStatus(c)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	t.Run("redirect", func(t *testing.T) {
		for range 2 {
			got, err := s.RedirectDNS(ctx, DNSRedirectRequest{Port: 42069})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(dnsWant(42069), got); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
		}
	})
	t.Run("kernel view", func(t *testing.T) {
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			t.Fatal(err)
		}
		var hooks []string
		for _, ch := range chains {
			if ch.Table.Name == "banger" {
				hooks = append(hooks, ch.Name+" "+string(ch.Type)+"/"+strconv.Itoa(int(*ch.Hooknum))+"/"+strconv.Itoa(int(*ch.Priority)))
			}
		}
		if diff := cmp.Diff([]string{"prerouting nat/0/-100"}, hooks); diff != "" {
			t.Errorf("chains (-want +got):\n%s", diff)
		}
		rules, err := c.GetRules(table, &nftables.Chain{Name: "prerouting", Table: table})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rules {
			tag, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			var nat *expr.NAT
			var imm [][]byte
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.NAT:
					nat = e
				case *expr.Immediate:
					imm = append(imm, e.Data)
				}
			}
			if nat == nil || nat.Type != expr.NATTypeDestNAT || !nat.Specified || len(imm) != 2 {
				t.Errorf("rule %q: nat %+v, immediates %v: not a dnat to address and port", tag, nat, imm)
				continue
			}
			got = append(got, fmt.Sprintf("%s -> %v:%d", tag, net.IP(imm[0]), int(imm[1][0])<<8|int(imm[1][1])))
		}
		want := []string{
			"banger dns-redirect udp 172.16.0.1:42069 banger-t0 -> 172.16.0.1:42069",
			"banger dns-redirect tcp 172.16.0.1:42069 banger-t0 -> 172.16.0.1:42069",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("rules (-want +got):\n%s", diff)
		}
		if nft, err := exec.LookPath("nft"); err == nil {
			out, err := exec.CommandContext(ctx, "ip", "netns", "exec", strings.TrimPrefix(cfg.NetNS, "/run/netns/"),
				nft, "list", "chain", "ip", "banger", "prerouting").CombinedOutput()
			if err != nil {
				t.Fatalf("nft list: %v: %s", err, out)
			}
			for _, want := range []string{
				"type nat hook prerouting priority dstnat; policy accept;",
				`iifname "banger-t0" ip daddr 172.16.0.1 udp dport 53 dnat to 172.16.0.1:42069 comment "banger dns-redirect udp 172.16.0.1:42069 banger-t0"`,
				`iifname "banger-t0" ip daddr 172.16.0.1 tcp dport 53 dnat to 172.16.0.1:42069 comment "banger dns-redirect tcp 172.16.0.1:42069 banger-t0"`,
			} {
				if !strings.Contains(string(out), want) {
					t.Errorf("nft list chain ip banger prerouting lacks %q:\n%s", want, out)
				}
			}
		} else {
			t.Log("nft not installed; skipped nft's reading of the chain")
		}
	})
	t.Run("other port replaces", func(t *testing.T) {
		got, err := s.RedirectDNS(ctx, DNSRedirectRequest{Port: 5353})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(dnsWant(5353), got); diff != "" {
			t.Errorf("status (-want +got):\n%s", diff)
		}
	})
	t.Run("lives beside NAT", func(t *testing.T) {
		guest := netip.MustParseAddr("172.16.0.2")
		if _, err := s.AddNAT(ctx, NATRequest{Tap: "bgtap1", GuestIP: guest}); err != nil {
			t.Fatal(err)
		}
		st, err := s.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.NAT) != 1 || st.NAT[0].GuestIP != guest {
			t.Errorf("nat status %+v: the redirect shows up as a guest", st.NAT)
		}
		if err := s.RemoveNAT(ctx, NATRequest{Tap: "bgtap1", GuestIP: guest}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(dnsWant(5353), current(t)); diff != "" {
			t.Errorf("after nat add/remove (-want +got):\n%s", diff)
		}
		if _, err := s.RedirectDNS(ctx, DNSRedirectRequest{Port: 5353}); err != nil {
			t.Fatal(err)
		}
		st, err = s.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.NAT) != 0 {
			t.Errorf("nat after redirect: %+v", st.NAT)
		}
	})
	t.Run("stale rule of another bridge address is replaced", func(t *testing.T) {
		pre := preroutingChain(table)
		c.AddRule(&nftables.Rule{Table: table, Chain: pre,
			Exprs:    dnsRedirectExprs("banger-t0", netip.MustParseAddr("10.9.0.1"), "udp", 5353),
			UserData: userdata.AppendString(nil, userdata.TypeComment, dnsTag("udp", netip.MustParseAddr("10.9.0.1"), 5353, "banger-t0"))})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RedirectDNS(ctx, DNSRedirectRequest{Port: 5353}); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(dnsWant(5353), current(t)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("unredirect", func(t *testing.T) {
		for range 2 {
			if err := s.UnredirectDNS(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if diff := cmp.Diff(DNSRedirectStatus{Rules: []string{}}, current(t)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("cleanup drops it with the table", func(t *testing.T) {
		if _, err := s.RedirectDNS(ctx, DNSRedirectRequest{Port: 42069}); err != nil {
			t.Fatal(err)
		}
		if err := Cleanup(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		tables, err := c.ListTables()
		if err != nil {
			t.Fatal(err)
		}
		for _, tb := range tables {
			if tb.Name == "banger" {
				t.Errorf("table ip banger survived cleanup")
			}
		}
		if err := s.UnredirectDNS(ctx); err != nil {
			t.Errorf("unredirect without a table: %v", err)
		}
	})
}

// inNetNS runs fn on an OS thread inside the namespace at path. Sockets
// fn opens stay in that namespace whichever thread uses them later.
func inNetNS(path string, fn func() error) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread dies with the goroutine rather than
		// go back to the scheduler in the wrong namespace.
		runtime.LockOSThread()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// TestNetNSDNSRedirectEndToEnd: a guest namespace, wired to the helper's
// bridge by a veth pair, asks the bridge address on port 53 and gets the
// answer of a dns.Server listening on the bridge address's high port.
func TestNetNSDNSRedirectEndToEnd(t *testing.T) {
	s, cfg := nsServer(t)
	nsNFT(t, cfg.NetNS)
	guestNS := newTestNetNS(t)
	h, gh := nsHandle(t, cfg.NetNS), nsHandle(t, guestNS)
	ctx := t.Context()
	bridgeIP := cfg.CIDR.Addr()
	const port = 42069

	// The server binds before the bridge (and its address) exists, as the
	// daemon may.
	srv, err := dns.New(dns.Config{
		Listen: []netip.AddrPort{netip.AddrPortFrom(bridgeIP, port)},
		Lookup: func(name string) (netip.Addr, bool) {
			return netip.MustParseAddr("172.16.0.2"), name == "guest"
		},
		AllowForward: dns.AllowFrom(cfg.CIDR),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := inNetNS(cfg.NetNS, func() error { return srv.Start(ctx) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	if _, err := s.EnsureBridge(ctx, "banger-t0"); err != nil {
		t.Fatal(err)
	}
	br, err := h.LinkByName("banger-t0")
	if err != nil {
		t.Fatal(err)
	}
	veth := addVeth(t, h, "bgveth0", "eth0")
	peer, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	gfd, err := os.Open(guestNS)
	if err != nil {
		t.Fatal(err)
	}
	defer gfd.Close()
	for _, err := range []error{h.LinkSetMaster(veth, br), h.LinkSetUp(veth), h.LinkSetNsFd(peer, int(gfd.Fd()))} {
		if err != nil {
			t.Fatal(err)
		}
	}
	geth, err := gh.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	lo, err := gh.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	hlo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	gaddr, _ := netlink.ParseAddr("172.16.0.2/24")
	for _, err := range []error{gh.AddrAdd(geth, gaddr), gh.LinkSetUp(geth), gh.LinkSetUp(lo), h.LinkSetUp(hlo)} {
		if err != nil {
			t.Fatal(err)
		}
	}

	// ask sends one query from the namespace at ns to bridgeIP:53.
	ask := func(ns, network, name string) ([]string, error) {
		var out []string
		err := inNetNS(ns, func() error {
			m := new(mdns.Msg)
			m.SetQuestion(name, mdns.TypeA)
			c := &mdns.Client{Net: network, Timeout: 2 * time.Second}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			r, _, err := c.ExchangeContext(cctx, m, netip.AddrPortFrom(bridgeIP, 53).String())
			if err != nil {
				return err
			}
			out = append(out, mdns.RcodeToString[r.Rcode])
			for _, rr := range r.Answer {
				out = append(out, strings.Join(strings.Fields(rr.String()), " "))
			}
			return nil
		})
		return out, err
	}
	protos := []string{"udp", "tcp"}

	t.Run("no answer on 53 before the redirect", func(t *testing.T) {
		if _, err := ask(guestNS, "udp", "guest.vm."); !errors.Is(err, unix.ECONNREFUSED) {
			t.Errorf("query to port 53 without a redirect: %v, want connection refused", err)
		}
	})
	if _, err := s.RedirectDNS(ctx, DNSRedirectRequest{Port: port}); err != nil {
		t.Fatal(err)
	}
	t.Run("guest asks the bridge on 53", func(t *testing.T) {
		for _, network := range protos {
			got, err := ask(guestNS, network, "guest.vm.")
			if err != nil {
				t.Fatalf("%s: %v", network, err)
			}
			if diff := cmp.Diff([]string{"NOERROR", "guest.vm. 5 IN A 172.16.0.2"}, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", network, diff)
			}
			got, err = ask(guestNS, network, "other.vm.")
			if err != nil {
				t.Fatalf("%s: %v", network, err)
			}
			if diff := cmp.Diff([]string{"NXDOMAIN"}, got); diff != "" {
				t.Errorf("%s other.vm (-want +got):\n%s", network, diff)
			}
		}
	})
	t.Run("only what arrives on the bridge", func(t *testing.T) {
		// The host itself (output path, not prerouting) is not redirected.
		if _, err := ask(cfg.NetNS, "udp", "guest.vm."); !errors.Is(err, unix.ECONNREFUSED) {
			t.Errorf("local query to port 53: %v, want connection refused", err)
		}
	})
	t.Run("gone after unredirect", func(t *testing.T) {
		if err := s.UnredirectDNS(ctx); err != nil {
			t.Fatal(err)
		}
		// conntrack keeps the old mapping for an existing flow; a new
		// source port is a new flow.
		for _, network := range protos {
			if got, err := ask(guestNS, network, "guest.vm."); !errors.Is(err, unix.ECONNREFUSED) {
				t.Errorf("%s after unredirect: %v %v, want connection refused", network, got, err)
			}
		}
	})
}

// TestNetNSDNSOverSocket drives the new routes through the typed client.
func TestNetNSDNSOverSocket(t *testing.T) {
	cfg := testConfig(t)
	cfg.NetNS = newTestNetNS(t)
	nsNFT(t, cfg.NetNS)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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

	st, err := cl.RedirectDNS(ctx, 42069)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(dnsWant(42069), st); diff != "" {
		t.Errorf("redirect (-want +got):\n%s", diff)
	}
	if _, err := cl.RedirectDNS(ctx, 80); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("redirect to port 80: %v, want bad_request", err)
	}
	if err := cl.UnredirectDNS(ctx); err != nil {
		t.Fatal(err)
	}
	// In a namespace, resolver routing is never applied: it is host-wide.
	addr := netip.MustParseAddrPort("127.0.0.1:42069")
	rs, err := cl.SyncResolver(ctx, "banger-t0", addr)
	if err != nil || rs.Applied || !strings.Contains(rs.Reason, "host-wide") {
		t.Errorf("sync in a netns: %+v, %v; want not applied, host-wide", rs, err)
	}
	rs, err = cl.ClearResolver(ctx, "banger-t0")
	if err != nil || rs.Applied {
		t.Errorf("clear in a netns: %+v, %v; want not applied", rs, err)
	}
	if _, err := cl.SyncResolver(ctx, "banger-t0", netip.MustParseAddrPort("1.1.1.1:53")); !errors.Is(err, api.ErrBadRequest) {
		t.Errorf("sync to a foreign resolver: %v, want bad_request", err)
	}
	var left []string
	c := nsNFT(t, cfg.NetNS)
	rules, err := listDNSRules(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		left = append(left, r.tag)
	}
	if len(left) != 0 {
		t.Errorf("rules left after unredirect: %v", left)
	}
}
