package sandbox

import (
	"fmt"
	"net/netip"

	"github.com/banger/banger/internal/api"
)

// nextAddress returns the lowest address in the bridge's subnet that is not
// the network, broadcast or bridge address and not in use. Addresses are
// reused after a VM is deleted (lowest first), which is why known_hosts
// entries are removed on delete.
func nextAddress(bridge netip.Prefix, used map[netip.Addr]bool) (netip.Addr, error) {
	subnet := bridge.Masked()
	for a := subnet.Addr().Next(); subnet.Contains(a); a = a.Next() {
		if a == bridge.Addr() || used[a] {
			continue
		}
		if !subnet.Contains(a.Next()) { // the broadcast address
			break
		}
		return a, nil
	}
	return netip.Addr{}, api.WithHint(api.Errorf(api.CodeConflict, "no free address left in %s", subnet),
		"delete unused VMs (banger vm prune) or widen network.cidr in the config")
}

// macFor derives a locally administered unicast MAC from a VM id (8 hex
// digits): 52:54:00 is QEMU's prefix, widely recognised as a VM NIC.
func macFor(id string) string {
	return fmt.Sprintf("52:54:00:%s:%s:%s", id[0:2], id[2:4], id[4:6])
}

// tapFor names a VM's tap after its id; the root helper accepts only this
// shape (bgtap + up to 10 of [a-z0-9]).
func tapFor(id string) string { return "bgtap" + id }
