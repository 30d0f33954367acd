// Command banger-agent is banger's in-guest control agent. Started as PID 1
// (the kernel's init) it is banger's init instead; otherwise it serves the
// agent API on the virtio-serial port and/or vsock.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
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
	flag.Parse()
	if *vsockPort > 1<<32-1 {
		fmt.Fprintf(os.Stderr, "banger-agent: --vsock-port %d is out of range\n", *vsockPort)
		return 2
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
