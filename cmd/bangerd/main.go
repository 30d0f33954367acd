// Command bangerd is banger's owner daemon. It runs as the installed owner
// user, never as root unless told to (--allow-root, for containers and tests).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/banger/banger/internal/buildinfo"
	"github.com/banger/banger/internal/config"
	"github.com/banger/banger/internal/daemon"
	"github.com/banger/banger/internal/paths"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("bangerd", flag.ContinueOnError)
	system := fs.Bool("system", false, "run as the installed system service (the systemd unit passes this)")
	allowRoot := fs.Bool("allow-root", os.Getenv("BANGER_ALLOW_ROOT") == "1", "allow running as root (containers, tests)")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	_ = system // the layout is the same; the flag marks the systemd invocation in process listings
	if *version {
		fmt.Println("bangerd", buildinfo.Get().String())
		return 0
	}
	if os.Geteuid() == 0 && !*allowRoot {
		fmt.Fprintln(os.Stderr, "bangerd: refusing to run as root; run it as the owner user (sudo banger system install --owner USER), or pass --allow-root in a container")
		return 2
	}
	home, err := os.UserHomeDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bangerd: no home directory:", err)
		return 2
	}
	layout := paths.FromEnv()
	cfg, err := config.Load(config.LoadOptions{
		Files: config.Files(layout, paths.User{Home: home}),
		Home:  home,
		Host:  config.DetectHost(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bangerd: config:", err)
		return 2
	}
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	d, err := daemon.New(daemon.Options{Layout: layout, Home: home, Config: cfg, Log: log})
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	if err := d.Run(ctx); err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	return 0
}
