package roothelper

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netNS is the network namespace the helper acts in: fd -1 is the helper's
// own namespace, anything else an open namespace file.
type netNS struct {
	path string
	fd   int
}

func openNetNS(path string) (netNS, error) {
	if path == "" {
		return netNS{fd: -1}, nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return netNS{}, fmt.Errorf("open netns %s: %w", path, err)
	}
	// The nftables netlink dialer treats fd 0 as "no namespace".
	if fd == 0 {
		nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
		unix.Close(fd)
		if err != nil {
			return netNS{}, fmt.Errorf("dup netns fd: %w", err)
		}
		fd = nfd
	}
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil || typ != unix.CLONE_NEWNET {
		unix.Close(fd)
		return netNS{}, fmt.Errorf("open netns %s: not a network namespace", path)
	}
	return netNS{path: path, fd: fd}, nil
}

func (n netNS) close() error {
	if n.fd < 0 {
		return nil
	}
	return unix.Close(n.fd)
}

func (n netNS) String() string {
	if n.fd < 0 {
		return "host namespace"
	}
	return "netns " + n.path
}

func (n netNS) netlink() (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(netns.NsHandle(n.fd))
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", n, err)
	}
	return h, nil
}

func (n netNS) nft() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if n.fd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(n.fd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables in %s: %w", n, err)
	}
	return c, nil
}

// do runs fn on an OS thread inside the namespace. It is for what has no
// namespace-aware API: opening /dev/net/tun (a tap is born in the opener's
// namespace) and /proc/sys/net (resolved against the opener's namespace).
func (n netNS) do(fn func() error) error {
	if n.fd < 0 {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread has left the process's namespace, so it
		// must die with this goroutine rather than go back to the scheduler.
		runtime.LockOSThread()
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter %s: %w", n, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// readSysctl reads a /proc/sys file as seen from the namespace.
func (n netNS) readSysctl(path string) (string, error) {
	var v string
	err := n.do(func() error {
		b, err := os.ReadFile(path)
		v = strings.TrimSpace(string(b))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read %s in %s: %w", path, n, err)
	}
	return v, nil
}

// writeSysctl writes a /proc/sys file as seen from the namespace.
func (n netNS) writeSysctl(path, value string) error {
	err := n.do(func() error {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, werr := f.WriteString(value + "\n")
		return errors.Join(werr, f.Close())
	})
	if err != nil {
		return fmt.Errorf("write %s=%s in %s: %w", path, value, n, err)
	}
	return nil
}

// retryDump repeats a netlink dump that the kernel interrupted because the
// table changed under it; the partial answer is not trusted.
func retryDump[T any](fn func() (T, error)) (T, error) {
	var v T
	var err error
	for range 5 {
		v, err = fn()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}
