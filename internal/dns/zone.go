package dns

import (
	"context"
	"net"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

const (
	// zone is the only zone the server is authoritative for.
	zone = "vm."
	// ttl is the TTL of every answer and of negative answers: a VM that
	// stops disappears from caches within seconds.
	ttl = 5
	// ednsSize is the UDP payload size the server advertises (the DNS flag
	// day 2020 value).
	ednsSize = 1232
)

// handle answers one query: from the zone when the name is in it,
// otherwise by forwarding for allowed sources.
func (s *Server) handle(ctx context.Context, w mdns.ResponseWriter, req *mdns.Msg) {
	src, network := remote(w)
	resp := s.respond(ctx, req, src, network)
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("dns reply", "client", src.String(), "err", err)
	}
}

func (s *Server) respond(ctx context.Context, req *mdns.Msg, src netip.Addr, network string) *mdns.Msg {
	if req.Opcode != mdns.OpcodeQuery {
		return reply(req, mdns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		return reply(req, mdns.RcodeFormatError)
	}
	q := req.Question[0]
	name := mdns.CanonicalName(q.Name)
	if mdns.IsSubDomain(zone, name) {
		m := s.answer(req, q, name)
		m.RecursionAvailable = s.cfg.AllowForward(src)
		return m
	}
	if !s.cfg.AllowForward(src) {
		s.log.Debug("dns forward refused", "client", src.String(), "name", q.Name)
		return reply(req, mdns.RcodeRefused)
	}
	m := s.forward(ctx, req, network)
	m.RecursionAvailable = true
	return m
}

// answer is the authoritative answer for name (lower case, inside the
// zone). A VM name is one label: "<name>.vm.". The owner name of every
// record echoes the question's case (resolvers check it).
func (s *Server) answer(req *mdns.Msg, q mdns.Question, name string) *mdns.Msg {
	m := reply(req, mdns.RcodeSuccess)
	m.Authoritative = true
	if q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
		m.Rcode = mdns.RcodeRefused
		m.Authoritative = false
		return m
	}
	if name == zone {
		if q.Qtype == mdns.TypeSOA || q.Qtype == mdns.TypeANY {
			m.Answer = append(m.Answer, soa(q.Name))
		} else {
			m.Ns = append(m.Ns, soa(zone))
		}
		return m
	}
	label := strings.TrimSuffix(name, "."+zone)
	var addr netip.Addr
	ok := !strings.Contains(label, ".")
	if ok {
		addr, ok = s.cfg.Lookup(label)
	}
	if !ok || !addr.IsValid() {
		m.Rcode = mdns.RcodeNameError
		m.Ns = append(m.Ns, soa(zone))
		return m
	}
	addr = addr.Unmap()
	hdr := func(t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: q.Name, Rrtype: t, Class: mdns.ClassINET, Ttl: ttl}
	}
	switch {
	case addr.Is4() && (q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY):
		m.Answer = append(m.Answer, &mdns.A{Hdr: hdr(mdns.TypeA), A: addr.AsSlice()})
	case addr.Is6() && (q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY):
		m.Answer = append(m.Answer, &mdns.AAAA{Hdr: hdr(mdns.TypeAAAA), AAAA: addr.AsSlice()})
	default:
		// The name exists without this type: NOERROR, no answer, and the
		// SOA so the "no data" is cached for ttl only.
		m.Ns = append(m.Ns, soa(zone))
	}
	return m
}

// soa is the zone's SOA; its minimum (and its own TTL) make negative
// answers live ttl seconds.
func soa(owner string) *mdns.SOA {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: owner, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: ttl},
		Ns:      zone,
		Mbox:    "hostmaster." + zone,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  ttl,
	}
}

// reply starts the answer to req with rcode, echoing EDNS0 when the query
// carried it.
func reply(req *mdns.Msg, rcode int) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetRcode(req, rcode)
	if req.IsEdns0() != nil {
		m.SetEdns0(ednsSize, false)
	}
	return m
}

// remote is the client's address and the transport it used ("udp" or
// "tcp").
func remote(w mdns.ResponseWriter) (netip.Addr, string) {
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap(), "udp"
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap(), "tcp"
	}
	return netip.Addr{}, "udp"
}
