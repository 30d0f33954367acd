// Command banger-agent is banger's in-guest control agent. Started as PID 1
// (the kernel's init) it is banger's init instead; otherwise it serves the
// agent API on the virtio-serial port and/or vsock.
//
// For tests and development on a host, --listen unix:PATH serves the API
// on a unix socket instead, and a shutdown request ends the agent rather
// than the machine: it exits 0 after a power-off request and 3 after a
// reboot request (firecrackertest's emulated guest reads the difference).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/banger/banger/internal/guest/agent"
	"github.com/banger/banger/internal/guest/boot"
)

// version is set at link time: -ldflags "-X main.version=...". The agent
// does not link internal/buildinfo, to stay a guest-only binary.
var version = ""

func main() {
	if os.Getpid() == 1 {
		boot.Main()
		return
	}
	os.Exit(run())
}

func run() int {
	serial := flag.String("serial", "/dev/virtio-ports/banger.agent", "virtio-serial port to serve on (empty: none)")
	vsockPort := flag.Uint("vsock-port", 1024, "vsock port to listen on (0: none)")
	listen := flag.String("listen", "", "test/dev: serve on unix:PATH instead of the guest channels; shutdown exits the agent (0 power-off, 3 reboot)")
	root := flag.String("root", "", "with --listen: directory standing for the guest's / in the file routes")
	proc := flag.String("proc", "", "with --listen: directory standing for the guest's /proc (health, ports)")
	flag.Parse()
	if *vsockPort > 1<<32-1 {
		fmt.Fprintf(os.Stderr, "banger-agent: --vsock-port %d is out of range\n", *vsockPort)
		return 2
	}
	if *listen != "" {
		return runListen(*listen, *root, *proc)
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	v := agentVersion()
	log.Info("banger-agent starting", "version", v, "serial", *serial, "vsock_port", *vsockPort)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Whichever channel exists is served; both are retried while missing,
	// since udev and module loading may create them after we start.
	a := agent.New(agent.Config{
		Logger:     log,
		Version:    v,
		SerialPath: *serial,
		VsockPort:  uint32(*vsockPort),
	})
	if err := a.Run(ctx); err != nil && ctx.Err() == nil {
		log.Error("agent stopped", "err", err)
		return 1
	}
	return 0
}

// exitReboot is how the agent exits after a reboot request under --listen.
const exitReboot = 3

// runListen serves the agent API on a host unix socket, for tests and
// development: nothing is powered off, the agent exits instead. root and
// proc, when set, stand for the guest's / (file routes) and /proc.
func runListen(addr, root, proc string) int {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok || path == "" {
		fmt.Fprintf(os.Stderr, "banger-agent: --listen %q: want unix:PATH\n", addr)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ln, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "banger-agent: %v\n", err)
		return 1
	}
	defer os.Remove(path)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	code := make(chan int, 1)
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/"
	}
	a := agent.New(agent.Config{
		Logger:  log,
		Version: agentVersion(),
		Home:    home,
		Root:    root,
		Proc:    proc,
		PowerOff: func(_ context.Context, reboot bool) error {
			c := 0
			if reboot {
				c = exitReboot
			}
			log.Info("shutdown requested: exiting", "reboot", reboot)
			select {
			case code <- c:
			default:
			}
			cancel()
			return nil
		},
	})
	log.Info("banger-agent listening", "version", agentVersion(), "socket", path)
	if err := a.Serve(ctx, ln); err != nil {
		log.Error("agent stopped", "err", err)
		return 1
	}
	select {
	case c := <-code:
		return c
	default:
		return 0
	}
}

func agentVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			return bi.Main.Version
		}
	}
	return "dev"
}
