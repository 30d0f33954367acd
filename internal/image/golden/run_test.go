package golden

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRunErrorCarriesArgvAndTail(t *testing.T) {
	var log strings.Builder
	var lines []string
	err := runner{log: &log}.run(t.Context(), command{
		argv:   []string{"sh", "-c", "echo first; echo boom >&2; exit 3"},
		onLine: func(l string) { lines = append(lines, l) },
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`"sh" "-c"`, "exit status 3", "boom"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if log.String() != "first\nboom\n" || strings.Join(lines, "|") != "first|boom" {
		t.Errorf("log %q lines %q", log.String(), lines)
	}
}

func TestRunCancelKillsProcessGroup(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	pids := make(chan int, 1)
	done := make(chan error, 1)
	go func() {
		done <- runner{}.run(ctx, command{
			// The background sleep is a grandchild: it only dies if the
			// whole group is killed.
			argv: []string{"sh", "-c", "sleep 60 & echo $!; wait"},
			onLine: func(l string) {
				if pid, err := strconv.Atoi(l); err == nil {
					pids <- pid
				}
			},
		})
	}()
	var pid int
	select {
	case pid = <-pids:
	case <-time.After(10 * time.Second):
		t.Fatal("no pid from the child")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("grandchild %d survived the cancel", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// alive is false for a gone or zombie process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 16}
	tb.Write([]byte("line one\nline two\nline three\n"))
	if got := tb.String(); got != "line three\n" {
		t.Errorf("tail = %q, want the last whole line", got)
	}
	tb = &tailBuffer{max: 64}
	tb.Write([]byte("short\n"))
	if got := tb.String(); got != "short\n" {
		t.Errorf("tail = %q", got)
	}
}
