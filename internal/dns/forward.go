package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	mdns "github.com/miekg/dns"
)

// forward asks every upstream at once, over the transport the client used
// (a truncated UDP answer goes back truncated and the client retries over
// TCP), and returns the first usable answer. SERVFAIL when none answers in
// time, or when every answer is SERVFAIL or REFUSED.
func (s *Server) forward(ctx context.Context, req *mdns.Msg, network string) *mdns.Msg {
	q := req.Question[0]
	ups, err := s.upstreams()
	if err != nil {
		s.log.Warn("dns forward", "name", q.Name, "err", err)
		return reply(req, mdns.RcodeServerFailure)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ForwardTimeout)
	defer cancel()
	type result struct {
		msg *mdns.Msg
		err error
	}
	results := make(chan result, len(ups))
	for _, u := range ups {
		go func() {
			c := &mdns.Client{Net: network, Timeout: s.cfg.ForwardTimeout}
			m, _, err := c.ExchangeContext(ctx, req.Copy(), u.String())
			if err != nil {
				err = fmt.Errorf("%s %s: %w", network, u, err)
			}
			results <- result{m, err}
		}()
	}
	var errs []error
	for range ups {
		r := <-results
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case r.msg.Rcode == mdns.RcodeServerFailure || r.msg.Rcode == mdns.RcodeRefused:
			errs = append(errs, fmt.Errorf("answered %s", mdns.RcodeToString[r.msg.Rcode]))
		default:
			r.msg.Id = req.Id
			return r.msg
		}
	}
	s.log.Warn("dns forward: no upstream answered", "name", q.Name, "upstreams", fmt.Sprint(ups), "err", errors.Join(errs...))
	return reply(req, mdns.RcodeServerFailure)
}

// upstreams are the configured ones, else the host's, without the
// server's own addresses (forwarding to itself would loop).
func (s *Server) upstreams() ([]netip.AddrPort, error) {
	ups := s.cfg.Upstreams
	if len(ups) == 0 {
		var err error
		if ups, err = SystemUpstreams(); err != nil {
			return nil, err
		}
	}
	own := s.Addrs()
	ups = slices.DeleteFunc(slices.Clone(ups), func(u netip.AddrPort) bool { return slices.Contains(own, u) })
	if len(ups) == 0 {
		return nil, errors.New("no upstream resolver besides this server; set network.upstream_dns")
	}
	return ups, nil
}
