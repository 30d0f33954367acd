package image

import (
	"context"
	"sync"
)

// nameLocks is a set of per-name locks whose waits end when the caller's
// context does. The zero value is ready to use.
type nameLocks struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed when released
}

// lock takes the lock of name, waiting while another holder has it.
func (l *nameLocks) lock(ctx context.Context, name string) (unlock func(), err error) {
	return l.lockNotify(ctx, name, nil)
}

// lockNotify is lock that calls onWait (if not nil) once when it has to
// wait.
func (l *nameLocks) lockNotify(ctx context.Context, name string, onWait func()) (unlock func(), err error) {
	for {
		l.mu.Lock()
		if l.held == nil {
			l.held = map[string]chan struct{}{}
		}
		ch, busy := l.held[name]
		if !busy {
			ch = make(chan struct{})
			l.held[name] = ch
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.held, name)
				l.mu.Unlock()
				close(ch)
			}, nil
		}
		l.mu.Unlock()
		if onWait != nil {
			onWait()
			onWait = nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
