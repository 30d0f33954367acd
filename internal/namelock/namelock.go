// Package namelock is per-name locks, in process (Set) and across processes
// (LockFile, an flock), whose waits end when the
// caller's context does: a pull, import or VM verb on one name waits for
// another on the same name, never for one on a different name.
package namelock

import (
	"context"
	"sync"
)

// Set is a set of per-name locks. The zero value is ready to use.
type Set struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed when released
}

// Lock takes the lock of name, waiting while another holder has it.
func (l *Set) Lock(ctx context.Context, name string) (unlock func(), err error) {
	return l.LockNotify(ctx, name, nil)
}

// LockNotify is Lock that calls onWait (if not nil) once when it has to
// wait, so a caller can tell the user why nothing happens.
func (l *Set) LockNotify(ctx context.Context, name string, onWait func()) (unlock func(), err error) {
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
