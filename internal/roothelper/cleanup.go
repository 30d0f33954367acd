package roothelper

import (
	"context"
	"errors"
	"fmt"

	"github.com/banger/banger/internal/api"
)

// Cleanup removes everything the helper makes: the configured bridge's
// systemd-resolved routing, every link named like a banger tap, the
// configured bridge and any other bridge named like a banger bridge, the
// "ip banger" nftables table (NAT and the DNS redirect), and it restores
// ip_forward if the helper recorded its original value. It keeps going
// past failures and reports them all; running it again is harmless.
// cfg.Bridge may be empty (then only the naming rules apply).
func Cleanup(ctx context.Context, cfg Config) error {
	if cfg.Bridge != "" {
		if err := ValidateBridge(cfg.Bridge); err != nil {
			return err
		}
	}
	log := cfg.logger()
	ns, err := openNetNS(cfg.NetNS)
	if err != nil {
		return err
	}
	defer ns.close()
	// resolved's settings go before the bridge (revert needs the link).
	errs := []error{clearResolverRouting(ctx, cfg), deleteNATTable(ns)}
	errs = append(errs, deleteLinks(ns, cfg)...)
	errs = append(errs, restoreForwarding(ns, cfg.Layout))
	err = errors.Join(errs...)
	if err != nil {
		log.Warn("cleanup incomplete", "ns", ns.String(), "err", err)
	} else {
		log.Info("cleanup done", "ns", ns.String())
	}
	return err
}

func deleteLinks(ns netNS, cfg Config) []error {
	log := cfg.logger()
	h, err := ns.netlink()
	if err != nil {
		return []error{err}
	}
	defer h.Close()
	links, err := listLinks(h)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, l := range links {
		name := l.Attrs().Name
		switch {
		case tapRule.MatchString(name):
		case bridgeRule.MatchString(name) && l.Type() == "bridge":
		case name == cfg.Bridge:
			errs = append(errs, api.Errorf(api.CodeConflict, "link %q has the bridge's name but is a %s; left alone", name, l.Type()))
			continue
		default:
			continue
		}
		if err := h.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete %s %q: %w", l.Type(), name, err))
			continue
		}
		log.Info("deleted link", "name", name, "kind", l.Type(), "ns", ns.String())
	}
	return errs
}
