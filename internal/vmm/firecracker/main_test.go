package firecracker

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"github.com/banger/banger/internal/guest/agent"
	"github.com/banger/banger/internal/vmm/firecracker/firecrackertest"
)

// TestMain turns the test binary into a stand-in:
//
//   - with "--listen unix:PATH [--root DIR --proc DIR]", banger-agent's
//     test mode: the agent API on a unix socket, exiting 0 after a
//     power-off request and 3 after a reboot request (what the fake's
//     emulated guest runs);
//   - with firecrackertest.EnvConfig set, the strict fake firecracker.
func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && os.Args[1] == "--listen" {
		args := map[string]string{}
		for i := 1; i+1 < len(os.Args); i += 2 {
			args[os.Args[i]] = os.Args[i+1]
		}
		os.Exit(standInAgent(strings.TrimPrefix(args["--listen"], "unix:"), args["--root"], args["--proc"]))
	}
	if os.Getenv(firecrackertest.EnvConfig) != "" {
		os.Exit(firecrackertest.Main())
	}
	os.Exit(m.Run())
}

func standInAgent(path, root, proc string) int {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	code := make(chan int, 1)
	a := agent.New(agent.Config{
		Logger: slog.New(slog.DiscardHandler),
		Home:   os.TempDir(),
		Root:   root,
		Proc:   proc,
		PowerOff: func(_ context.Context, reboot bool) error {
			c := 0
			if reboot {
				c = firecrackertest.AgentRebootStatus
			}
			code <- c
			cancel()
			return nil
		},
	})
	a.Serve(ctx, ln)
	select {
	case c := <-code:
		return c
	default:
		return 0
	}
}
