//go:build !amd64

package host

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
)

func runTestGuest(kvmFd int, stop *atomic.Bool) ([]string, error) {
	return nil, fmt.Errorf("the KVM test guest is x86 code and this host is %s", runtime.GOARCH)
}

func wantGuestTrace() []string { return nil }

func stalledAt(trace []string, d time.Duration) string {
	return fmt.Sprintf("it stalled after %q", trace)
}
