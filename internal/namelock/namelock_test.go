package namelock

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestSameNameWaitsOtherNamesDoNot(t *testing.T) {
	var s Set
	unlock, err := s.Lock(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if u, err := s.Lock(t.Context(), "b"); err != nil {
		t.Fatalf("another name waited: %v", err)
	} else {
		u()
	}
	var got atomic.Bool
	waited := make(chan struct{})
	done := make(chan struct{})
	go func() {
		u, err := s.LockNotify(t.Context(), "a", func() { close(waited) })
		if err == nil {
			got.Store(true)
			u()
		}
		close(done)
	}()
	<-waited
	if got.Load() {
		t.Fatal("took a held lock")
	}
	unlock()
	<-done
	if !got.Load() {
		t.Fatal("waiter never got the lock")
	}
}

func TestWaitEndsWithContext(t *testing.T) {
	var s Set
	unlock, _ := s.Lock(t.Context(), "a")
	defer unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's error", err)
	}
}
