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

func TestLockFileExcludesAndWaits(t *testing.T) {
	path := t.TempDir() + "/.lock"
	unlock, err := LockFile(t.Context(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 400*time.Millisecond)
	defer cancel()
	waited := false
	if _, err := LockFile(ctx, path, func() { waited = true }); !errors.Is(err, context.DeadlineExceeded) || !waited {
		t.Fatalf("second holder: err %v waited %v, want a wait ended by the context", err, waited)
	}
	unlock()
	u2, err := LockFile(t.Context(), path, nil)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	u2()
}
