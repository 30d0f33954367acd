package dns

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"
)

// Every test here serves on 127.0.0.1 with kernel-picked ports and sends
// real queries with miekg/dns's client, over UDP and TCP.

var loopback0 = netip.MustParseAddrPort("127.0.0.1:0")

// vms is a fake of the daemon's live state.
type vms struct {
	mu sync.Mutex
	m  map[string]netip.Addr
}

func (v *vms) lookup(name string) (netip.Addr, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	a, ok := v.m[name]
	return a, ok
}

func (v *vms) set(name string, a netip.Addr) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !a.IsValid() {
		delete(v.m, name)
		return
	}
	v.m[name] = a
}

// start runs a Server for the test and returns its one address.
func start(t *testing.T, cfg Config) netip.AddrPort {
	t.Helper()
	if cfg.Listen == nil {
		cfg.Listen = []netip.AddrPort{loopback0}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s.Addrs()[0]
}

// query asks addr over network and returns the answer as text.
func query(t *testing.T, network string, addr netip.AddrPort, name string, qtype uint16) []string {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.ExchangeContext(t.Context(), m, addr.String())
	if err != nil {
		t.Fatalf("%s query %s %s: %v", network, name, mdns.TypeToString[qtype], err)
	}
	return msgText(r)
}

// msgText is the rcode and flags, then each record of the answer and
// authority sections, tabs turned into spaces.
func msgText(r *mdns.Msg) []string {
	head := mdns.RcodeToString[r.Rcode]
	if r.Authoritative {
		head += " aa"
	}
	if r.RecursionAvailable {
		head += " ra"
	}
	out := []string{head}
	for _, rr := range r.Answer {
		out = append(out, "an: "+strings.Join(strings.Fields(rr.String()), " "))
	}
	for _, rr := range r.Ns {
		out = append(out, "ns: "+strings.Join(strings.Fields(rr.String()), " "))
	}
	return out
}

const soaText = "ns: vm. 5 IN SOA vm. hostmaster.vm. 1 3600 600 86400 5"

func TestZone(t *testing.T) {
	state := &vms{m: map[string]netip.Addr{"sandbox": netip.MustParseAddr("172.16.0.2")}}
	addr := start(t, Config{Lookup: state.lookup, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}})
	tests := []struct {
		name  string
		qname string
		qtype uint16
		want  []string
	}{
		{"A", "sandbox.vm.", mdns.TypeA, []string{"NOERROR aa ra", "an: sandbox.vm. 5 IN A 172.16.0.2"}},
		{"case-insensitive, case echoed", "SandBox.VM.", mdns.TypeA, []string{"NOERROR aa ra", "an: SandBox.VM. 5 IN A 172.16.0.2"}},
		{"ANY", "sandbox.vm.", mdns.TypeANY, []string{"NOERROR aa ra", "an: sandbox.vm. 5 IN A 172.16.0.2"}},
		{"AAAA of an IPv4 VM", "sandbox.vm.", mdns.TypeAAAA, []string{"NOERROR aa ra", soaText}},
		{"MX", "sandbox.vm.", mdns.TypeMX, []string{"NOERROR aa ra", soaText}},
		{"unknown name", "nosuch.vm.", mdns.TypeA, []string{"NXDOMAIN aa ra", soaText}},
		{"below a VM", "www.sandbox.vm.", mdns.TypeA, []string{"NXDOMAIN aa ra", soaText}},
		{"apex SOA", "vm.", mdns.TypeSOA, []string{"NOERROR aa ra", "an: vm. 5 IN SOA vm. hostmaster.vm. 1 3600 600 86400 5"}},
		{"apex A", "VM.", mdns.TypeA, []string{"NOERROR aa ra", soaText}},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				if diff := cmp.Diff(tt.want, query(t, network, addr, tt.qname, tt.qtype)); diff != "" {
					t.Errorf("answer (-want +got):\n%s", diff)
				}
			})
		}
	}

	t.Run("live: records follow the state", func(t *testing.T) {
		state.set("sandbox", netip.Addr{}) // stopped
		state.set("other", netip.MustParseAddr("172.16.0.3"))
		for _, network := range []string{"udp", "tcp"} {
			got := [][]string{query(t, network, addr, "sandbox.vm.", mdns.TypeA), query(t, network, addr, "other.vm.", mdns.TypeA)}
			want := [][]string{{"NXDOMAIN aa ra", soaText}, {"NOERROR aa ra", "an: other.vm. 5 IN A 172.16.0.3"}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s after stop (-want +got):\n%s", network, diff)
			}
		}
	})
	t.Run("IPv6 VM", func(t *testing.T) {
		state.set("six", netip.MustParseAddr("fd00::6"))
		want := [][]string{{"NOERROR aa ra", "an: six.vm. 5 IN AAAA fd00::6"}, {"NOERROR aa ra", soaText}}
		got := [][]string{query(t, "udp", addr, "six.vm.", mdns.TypeAAAA), query(t, "udp", addr, "six.vm.", mdns.TypeA)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("lookup sees the bare lower-case label", func(t *testing.T) {
		var seen []string
		var mu sync.Mutex
		a := start(t, Config{Lookup: func(name string) (netip.Addr, bool) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, name)
			return netip.Addr{}, false
		}})
		query(t, "udp", a, "MiXeD.Vm.", mdns.TypeA)
		query(t, "tcp", a, "x.y.vm.", mdns.TypeA) // two labels: never looked up
		mu.Lock()
		defer mu.Unlock()
		if diff := cmp.Diff([]string{"mixed"}, seen); diff != "" {
			t.Errorf("lookups (-want +got):\n%s", diff)
		}
	})
}

func TestEDNSEchoed(t *testing.T) {
	state := &vms{m: map[string]netip.Addr{"sandbox": netip.MustParseAddr("172.16.0.2")}}
	addr := start(t, Config{Lookup: state.lookup})
	m := new(mdns.Msg)
	m.SetQuestion("sandbox.vm.", mdns.TypeA)
	m.SetEdns0(4096, false)
	r, _, err := (&mdns.Client{Timeout: 5 * time.Second}).ExchangeContext(t.Context(), m, addr.String())
	if err != nil {
		t.Fatal(err)
	}
	opt := r.IsEdns0()
	if opt == nil || opt.UDPSize() != ednsSize {
		t.Errorf("answer OPT = %v, want one with size %d", opt, ednsSize)
	}
}

// upstream is a fake resolver on loopback (UDP and TCP, same port) that
// answers every A query with 192.0.2.1 and records what it was asked.
type upstream struct {
	mu   sync.Mutex
	asks []string
}

func (u *upstream) start(t *testing.T, rcode int) netip.AddrPort {
	t.Helper()
	pc, ln, addr, err := bindPair(t.Context(), loopback0)
	if err != nil {
		t.Fatal(err)
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		u.mu.Lock()
		u.asks = append(u.asks, w.LocalAddr().Network()+" "+r.Question[0].Name)
		u.mu.Unlock()
		m := new(mdns.Msg)
		m.SetRcode(r, rcode)
		if rcode == mdns.RcodeSuccess {
			rr, _ := mdns.NewRR(r.Question[0].Name + " 300 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return addr
}

func (u *upstream) asked() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.asks)
}

// deadUpstream is a loopback address where nothing listens.
func deadUpstream(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	return a
}

// silentUpstream reads queries and never answers.
func silentUpstream(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func TestForward(t *testing.T) {
	none := func(string) (netip.Addr, bool) { return netip.Addr{}, false }
	up := &upstream{}
	good := up.start(t, mdns.RcodeSuccess)
	answer := []string{"NOERROR ra", "an: example.com. 300 IN A 192.0.2.1"}
	servfail := []string{"SERVFAIL ra"}

	t.Run("to the upstream, over the client's transport", func(t *testing.T) {
		addr := start(t, Config{Lookup: none, Upstreams: []netip.AddrPort{good}})
		for _, network := range []string{"udp", "tcp"} {
			if diff := cmp.Diff(answer, query(t, network, addr, "example.com.", mdns.TypeA)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", network, diff)
			}
		}
		if diff := cmp.Diff([]string{"udp example.com.", "tcp example.com."}, up.asked()); diff != "" {
			t.Errorf("upstream asked (-want +got):\n%s", diff)
		}
	})
	t.Run("first usable answer wins", func(t *testing.T) {
		bad := (&upstream{}).start(t, mdns.RcodeServerFailure)
		addr := start(t, Config{Lookup: none, ForwardTimeout: 2 * time.Second,
			Upstreams: []netip.AddrPort{deadUpstream(t), bad, silentUpstream(t), good}})
		began := time.Now()
		if diff := cmp.Diff(answer, query(t, "udp", addr, "example.com.", mdns.TypeA)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if took := time.Since(began); took > time.Second {
			t.Errorf("took %s: waited for the silent upstream", took)
		}
	})
	t.Run("SERVFAIL when the upstream is down", func(t *testing.T) {
		addr := start(t, Config{Lookup: none, Upstreams: []netip.AddrPort{deadUpstream(t)}})
		for _, network := range []string{"udp", "tcp"} {
			if diff := cmp.Diff(servfail, query(t, network, addr, "example.com.", mdns.TypeA)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", network, diff)
			}
		}
	})
	t.Run("SERVFAIL when the upstream is silent", func(t *testing.T) {
		addr := start(t, Config{Lookup: none, ForwardTimeout: 200 * time.Millisecond, Upstreams: []netip.AddrPort{silentUpstream(t)}})
		if diff := cmp.Diff(servfail, query(t, "udp", addr, "example.com.", mdns.TypeA)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("SERVFAIL when every upstream fails", func(t *testing.T) {
		bad := (&upstream{}).start(t, mdns.RcodeRefused)
		addr := start(t, Config{Lookup: none, Upstreams: []netip.AddrPort{bad}})
		if diff := cmp.Diff(servfail, query(t, "udp", addr, "example.com.", mdns.TypeA)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("never to itself", func(t *testing.T) {
		self := deadUpstream(t)
		addr := start(t, Config{Lookup: none, Listen: []netip.AddrPort{self}, Upstreams: []netip.AddrPort{self}})
		if diff := cmp.Diff(servfail, query(t, "udp", addr, "example.com.", mdns.TypeA)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("refused for a source that may not forward", func(t *testing.T) {
		before := len(up.asked())
		state := &vms{m: map[string]netip.Addr{"sandbox": netip.MustParseAddr("172.16.0.2")}}
		addr := start(t, Config{Lookup: state.lookup, Upstreams: []netip.AddrPort{good},
			AllowForward: AllowFrom(netip.MustParsePrefix("172.16.0.0/24"), netip.MustParsePrefix("10.1.0.0/16"))})
		// The predicate allows loopback, so this server forwards for the
		// test; one that allows nothing refuses it.
		if diff := cmp.Diff(answer, query(t, "udp", addr, "example.com.", mdns.TypeA)); diff != "" {
			t.Errorf("allowed (-want +got):\n%s", diff)
		}
		deny := start(t, Config{Lookup: state.lookup, Upstreams: []netip.AddrPort{good},
			AllowForward: func(netip.Addr) bool { return false }})
		for _, network := range []string{"udp", "tcp"} {
			if diff := cmp.Diff([]string{"REFUSED"}, query(t, network, deny, "example.com.", mdns.TypeA)); diff != "" {
				t.Errorf("%s denied (-want +got):\n%s", network, diff)
			}
			// The zone is still answered.
			if diff := cmp.Diff([]string{"NOERROR aa", "an: sandbox.vm. 5 IN A 172.16.0.2"}, query(t, network, deny, "sandbox.vm.", mdns.TypeA)); diff != "" {
				t.Errorf("%s zone when denied (-want +got):\n%s", network, diff)
			}
		}
		if got := len(up.asked()) - before; got != 1 {
			t.Errorf("upstream asked %d times, want 1 (the allowed query only)", got)
		}
	})
}

func TestAllowFrom(t *testing.T) {
	allow := AllowFrom(netip.MustParsePrefix("172.16.0.1/24")) // unmasked, as config.Network.CIDR is
	for _, tt := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.1.2.3", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"172.16.0.2", true},
		{"::ffff:172.16.0.9", true},
		{"172.16.1.2", false},
		{"10.0.0.1", false},
		{"192.168.1.5", false},
		{"fd00::1", false},
		{"0.0.0.0", false},
	} {
		if got := allow(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("AllowFrom(172.16.0.0/24)(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if AllowFrom()(netip.Addr{}) {
		t.Error("an invalid address is allowed")
	}
	if !AllowFrom()(netip.MustParseAddr("127.0.0.1")) || AllowFrom()(netip.MustParseAddr("172.16.0.2")) {
		t.Error("AllowFrom() must allow loopback only")
	}
}

func TestLifecycle(t *testing.T) {
	none := func(string) (netip.Addr, bool) { return netip.Addr{}, false }

	t.Run("bound when Start returns, on every address", func(t *testing.T) {
		s, err := New(Config{Lookup: none, Listen: []netip.AddrPort{loopback0, netip.MustParseAddrPort("127.0.0.2:0")}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		addrs := s.Addrs()
		if len(addrs) != 2 || addrs[0].Addr() != loopback0.Addr() || addrs[1].Addr().String() != "127.0.0.2" || addrs[0].Port() == 0 {
			t.Fatalf("addrs %v", addrs)
		}
		for _, a := range addrs {
			for _, network := range []string{"udp", "tcp"} {
				if got := query(t, network, a, "x.vm.", mdns.TypeA); got[0] != "NXDOMAIN aa ra" {
					t.Errorf("%s %s: %v", network, a, got)
				}
			}
		}
	})
	t.Run("all or nothing", func(t *testing.T) {
		taken, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer taken.Close()
		busy := taken.LocalAddr().(*net.UDPAddr).AddrPort()
		free := deadUpstream(t)
		s, err := New(Config{Lookup: none, Listen: []netip.AddrPort{free, busy}})
		if err != nil {
			t.Fatal(err)
		}
		err = s.Start(t.Context())
		if err == nil || !strings.Contains(err.Error(), "serve dns on "+busy.String()) {
			t.Fatalf("start on a taken port: %v", err)
		}
		// The first address was released again.
		pc, err := net.ListenPacket("udp", free.String())
		if err != nil {
			t.Errorf("first address still bound after the failed start: %v", err)
		} else {
			pc.Close()
		}
	})
	t.Run("Serve ends with its context", func(t *testing.T) {
		s, err := New(Config{Lookup: none, Listen: []netip.AddrPort{loopback0}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx) }()
		var addr netip.AddrPort
		for addr.Port() == 0 {
			if a := s.Addrs(); len(a) > 0 {
				addr = a[0]
			}
			time.Sleep(time.Millisecond)
		}
		query(t, "udp", addr, "x.vm.", mdns.TypeA)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return")
		}
		if err := s.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
		c := &mdns.Client{Timeout: 300 * time.Millisecond}
		m := new(mdns.Msg)
		m.SetQuestion("x.vm.", mdns.TypeA)
		if _, _, err := c.Exchange(m, addr.String()); err == nil {
			t.Error("still answering after Serve returned")
		}
		if err := s.Start(t.Context()); err == nil {
			t.Error("restarted a closed server")
		}
	})
	t.Run("bad config", func(t *testing.T) {
		for name, cfg := range map[string]Config{
			"no listen":        {Lookup: none},
			"no lookup":        {Listen: []netip.AddrPort{loopback0}},
			"upstream port 0":  {Lookup: none, Listen: []netip.AddrPort{loopback0}, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("1.1.1.1:0")}},
			"upstream 0.0.0.0": {Lookup: none, Listen: []netip.AddrPort{loopback0}, Upstreams: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:53")}},
			"invalid listen":   {Lookup: none, Listen: []netip.AddrPort{{}}},
			"invalid upstream": {Lookup: none, Listen: []netip.AddrPort{loopback0}, Upstreams: []netip.AddrPort{{}}},
		} {
			if _, err := New(cfg); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
	})
	t.Run("close before start", func(t *testing.T) {
		s, err := New(Config{Lookup: none, Listen: []netip.AddrPort{loopback0}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
}

func TestCloseEndsForwardsInFlight(t *testing.T) {
	s, err := New(Config{Lookup: func(string) (netip.Addr, bool) { return netip.Addr{}, false },
		Listen: []netip.AddrPort{loopback0}, Upstreams: []netip.AddrPort{silentUpstream(t)}, ForwardTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()[0]
	asked := make(chan error, 1)
	go func() {
		m := new(mdns.Msg)
		m.SetQuestion("example.com.", mdns.TypeA)
		_, _, err := (&mdns.Client{Net: "tcp", Timeout: time.Minute}).Exchange(m, addr.String())
		asked <- err
	}()
	time.Sleep(200 * time.Millisecond) // the query is now waiting on the silent upstream
	began := time.Now()
	if err := s.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("close took %s with a forward in flight", took)
	}
	<-asked // the client returns too: answered SERVFAIL or cut off
}
