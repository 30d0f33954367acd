package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/banger/banger/internal/guest/agent"
)

// GuestSetup prepares a booted guest for ssh. The key and known_hosts live
// with the daemon (internal/sshkeys).
type GuestSetup interface {
	// AuthorizedKey is the public key to install as root's only key.
	AuthorizedKey(ctx context.Context) (string, error)
	// HostKey records (fresh) or checks the guest's ed25519 host key.
	HostKey(name string, ip netip.Addr, key string, fresh bool) error
	// Forget removes what was recorded of a VM.
	Forget(name string, ip netip.Addr) error
}

// PortForwards runs a VM's host-to-guest forwards.
type PortForwards interface {
	Open(ctx context.Context, vm string, target func() (netip.Addr, bool), specs []string) error
	Close(vm string)
}

// FileSync is the [[file_sync]] config: checked before a VM is created,
// written as a tar stream for the guest's /root on its first boot.
type FileSync interface {
	Check() error
	Build(ctx context.Context, w io.Writer, warn func(string)) error
}

// hostKeyFile is the guest's host key banger pins in known_hosts.
const hostKeyFile = "/etc/ssh/ssh_host_ed25519_key.pub"

// prepareGuest runs once the agent answers: it installs the authorized key,
// copies the [[file_sync]] entries on the first boot, and learns (or checks)
// the guest's host key. The agent is a trusted channel to the guest, so the
// host key is known before anyone connects: no trust on first use.
func (m *Manager) prepareGuest(ctx context.Context, r *record, ag *agent.Client, firstBoot bool, progress Progress) error {
	g := m.cfg.Guest
	if g != nil {
		pub, err := g.AuthorizedKey(ctx)
		if err != nil {
			return err
		}
		if err := ag.PutFile(ctx, "/root/.ssh/authorized_keys", 0o600, []byte(strings.TrimSpace(pub)+"\n")); err != nil {
			return fmt.Errorf("install the ssh key in vm %q: %w", r.Name, err)
		}
	}
	if firstBoot && m.cfg.FileSync != nil && !r.Synced {
		pr, pw := io.Pipe()
		warn := func(msg string) { progress.stage("file_sync", "warning: "+msg) }
		go func() { pw.CloseWithError(m.cfg.FileSync.Build(ctx, pw, warn)) }()
		if _, err := ag.CopyTo(ctx, pr, "/root"); err != nil {
			pr.CloseWithError(err)
			return fmt.Errorf("copy [[file_sync]] entries into vm %q: %w", r.Name, err)
		}
		r.Synced = true
	}
	if g != nil {
		key, err := m.guestHostKey(ctx, ag)
		if err != nil {
			return fmt.Errorf("read the ssh host key of vm %q: %w", r.Name, err)
		}
		if err := g.HostKey(r.Name, r.IP, key, firstBoot); err != nil {
			return err
		}
		// Ready means ready for ssh: vm run opens a session right away.
		if err := m.waitSSHD(ctx, ag); err != nil {
			return fmt.Errorf("vm %q: sshd did not start: %w", r.Name, err)
		}
	}
	return nil
}

// waitSSHD polls the guest's listening sockets until sshd listens on 22.
func (m *Manager) waitSSHD(ctx context.Context, ag *agent.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		ports, err := ag.Ports(ctx)
		if err == nil {
			for _, p := range ports {
				if p.Proto == "tcp" && p.Port == 22 {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// guestHostKey waits for the guest's host key: sshd's keygen runs at boot,
// in parallel with the agent.
func (m *Manager) guestHostKey(ctx context.Context, ag *agent.Client) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		b, err := ag.ReadFile(ctx, hostKeyFile)
		if err == nil && len(strings.Fields(string(b))) >= 2 {
			f := strings.Fields(string(b))
			return f[0] + " " + f[1], nil
		}
		if err != nil && !errors.Is(err, agent.ErrNotFound) {
			return "", err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s did not appear: %w", hostKeyFile, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// hostSide opens what a running VM has on the host beyond its tap: NAT
// rules and port forwards.
func (m *Manager) hostSide(ctx context.Context, r record) error {
	if r.NAT {
		if err := m.cfg.Net.AddNAT(ctx, r.Tap, r.IP); err != nil {
			return fmt.Errorf("enable NAT for vm %q: %w", r.Name, err)
		}
	}
	return m.hostSideForwards(ctx, r)
}

// hostSideForwards opens a running VM's port forwards.
func (m *Manager) hostSideForwards(ctx context.Context, r record) error {
	if m.cfg.Forwards == nil || len(r.Forwards) == 0 {
		return nil
	}
	ip, name := r.IP, r.Name
	target := func() (netip.Addr, bool) {
		rn := m.runOf(name)
		return ip, rn != nil && rn.m.Alive()
	}
	return m.cfg.Forwards.Open(ctx, r.Name, target, r.Forwards)
}
