package sshkeys

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/banger/banger/internal/api"
)

// StoreConfig places bangerd's ssh material.
type StoreConfig struct {
	// Dir holds the generated key and known_hosts (paths.Layout.SSHDir()).
	Dir string
	// KeyPath is ssh_key_path from the config: a key of the user's that
	// banger uses as is (its .pub must exist). Empty means banger's own key
	// in Dir, generated on first need.
	KeyPath string
}

// Store is bangerd's ssh side: the key every guest authorizes and the
// known_hosts of guests' host keys. Its methods fit sandbox.GuestSetup.
type Store struct {
	cfg StoreConfig
	kh  KnownHosts
}

// NewStore returns the store; it touches no file until asked.
func NewStore(cfg StoreConfig) *Store {
	return &Store{cfg: cfg, kh: KnownHosts{Path: filepath.Join(cfg.Dir, "known_hosts")}}
}

// KeyPath is the private key guests authorize.
func (s *Store) KeyPath() string {
	if s.cfg.KeyPath != "" {
		return s.cfg.KeyPath
	}
	return filepath.Join(s.cfg.Dir, "id_ed25519")
}

// KnownHostsPath is the known_hosts file bangerd maintains.
func (s *Store) KnownHostsPath() string { return s.kh.Path }

// Paths answers GET /v1/ssh.
func (s *Store) Paths() api.SSHPaths {
	return api.SSHPaths{KeyPath: s.KeyPath(), KnownHosts: s.KnownHostsPath()}
}

// KnownHosts is the known_hosts file itself.
func (s *Store) KnownHosts() *KnownHosts { return &s.kh }

// AuthorizedKey returns the public key to install in guests, generating
// banger's own key on first need. A configured ssh_key_path is never
// generated or changed: without its .pub the error says how to make one.
func (s *Store) AuthorizedKey(ctx context.Context) (string, error) {
	if s.cfg.KeyPath == "" {
		return EnsureKey(ctx, s.KeyPath())
	}
	if _, err := os.Stat(s.cfg.KeyPath); err != nil {
		return "", api.WithHint(fmt.Errorf("ssh_key_path: %w", err),
			"point ssh_key_path in config.toml at an existing private key, or unset it to use banger's own")
	}
	pub, err := LoadPublic(s.cfg.KeyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return "", api.WithHint(fmt.Errorf("ssh_key_path: %w", err),
			fmt.Sprintf("make the public half next to it: ssh-keygen -y -f %s > %s.pub", s.cfg.KeyPath, s.cfg.KeyPath))
	}
	if err != nil {
		return "", fmt.Errorf("ssh_key_path: %w", err)
	}
	return pub, nil
}

// HostKey records the guest's host key when the VM is fresh (just
// created) and otherwise checks it first: a different key is an error
// naming the VM (ErrHostKeyChanged), and nothing is written.
func (s *Store) HostKey(name string, ip netip.Addr, key string, fresh bool) error {
	if !fresh {
		if err := s.kh.Check(name, ip, key); err != nil {
			return err
		}
	}
	_, err := s.kh.Set(name, ip, key)
	return err
}

// Forget removes a VM's host key entries (on delete: names and addresses
// are reused).
func (s *Store) Forget(name string, ip netip.Addr) error {
	return s.kh.Remove(name, ip)
}
