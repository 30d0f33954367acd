// Command banger is the CLI of banger: one-command development sandboxes on
// Firecracker microVMs.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/banger/banger/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := cli.NewApp().Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
