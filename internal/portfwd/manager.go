package portfwd

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrNotOpen is returned for a VM that has no Forwarder open.
var ErrNotOpen = errors.New("no forwards open")

// Manager holds one Forwarder per VM name. It is safe for concurrent use.
type Manager struct {
	cfg Config

	mu  sync.Mutex
	vms map[string]*Forwarder
}

// NewManager returns a Manager with no VM open; cfg is used for every
// Forwarder it makes.
func NewManager(cfg Config) *Manager {
	return &Manager{cfg: cfg, vms: map[string]*Forwarder{}}
}

// Open starts vm's forwards, all or none. A VM can be open once: Close it
// before opening it again (a restarted VM keeps its Forwarder, since target
// is asked on every connection).
func (m *Manager) Open(ctx context.Context, vm string, target Target, specs []Spec) ([]Active, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.vms[vm]; ok {
		return nil, fmt.Errorf("forwards of vm %q: already open", vm)
	}
	// Binding is quick and never waits on the network, so holding the lock
	// keeps two Opens of one VM from racing.
	f := New(m.cfg)
	act, err := f.Start(ctx, target, specs)
	if err != nil {
		return nil, err
	}
	m.vms[vm] = f
	return act, nil
}

// Add starts one more forward of an open VM.
func (m *Manager) Add(ctx context.Context, vm string, s Spec) (Active, error) {
	f, err := m.get(vm)
	if err != nil {
		return Active{}, err
	}
	return f.Add(ctx, s)
}

// Remove stops one forward of an open VM (see Forwarder.Remove).
func (m *Manager) Remove(vm string, s Spec) error {
	f, err := m.get(vm)
	if err != nil {
		return err
	}
	return f.Remove(s)
}

// List returns vm's forwards; none when it is not open.
func (m *Manager) List(vm string) []Active {
	f, err := m.get(vm)
	if err != nil {
		return nil
	}
	return f.List()
}

// Close stops vm's forwards and their connections. Closing a VM that is not
// open does nothing, so it can run on every stop.
func (m *Manager) Close(vm string) error {
	m.mu.Lock()
	f := m.vms[vm]
	delete(m.vms, vm)
	m.mu.Unlock()
	if f == nil {
		return nil
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("forwards of vm %q: %w", vm, err)
	}
	return nil
}

// CloseAll closes every VM's forwards, for daemon shutdown.
func (m *Manager) CloseAll() error {
	m.mu.Lock()
	vms := m.vms
	m.vms = map[string]*Forwarder{}
	m.mu.Unlock()
	var errs []error
	for vm, f := range vms {
		if err := f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("forwards of vm %q: %w", vm, err))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) get(vm string) (*Forwarder, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.vms[vm]
	if !ok {
		return nil, fmt.Errorf("forwards of vm %q: %w", vm, ErrNotOpen)
	}
	return f, nil
}
