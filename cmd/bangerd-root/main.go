// Command bangerd-root is banger's privileged helper: a closed set of host
// operations (bridge, taps, NAT) for the owner daemon, each validated.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"syscall"
	"time"

	"github.com/banger/banger/internal/buildinfo"
	"github.com/banger/banger/internal/config"
	"github.com/banger/banger/internal/install"
	"github.com/banger/banger/internal/paths"
	"github.com/banger/banger/internal/roothelper"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("bangerd-root", flag.ContinueOnError)
	ownerUID := fs.Int("owner-uid", -1, "uid allowed besides root (default: owner_uid from install.toml)")
	ownerGID := fs.Int("owner-gid", -1, "gid of the owner (default: from install.toml or the passwd entry)")
	cleanup := fs.Bool("cleanup", false, "remove every bridge, tap and NAT rule banger made, then exit")
	version := fs.Bool("version", false, "print the version and exit")
	netns := fs.String("netns", "", "make bridges, taps and NAT rules in this network namespace (a file such as /run/netns/NAME) instead of the helper's own; for isolated runs such as the end-to-end tests")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *version {
		fmt.Println("bangerd-root", buildinfo.Get().String())
		return 0
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bangerd-root: must run as root (it is started by bangerd-root.service or banger system run)")
		return 2
	}
	layout := paths.FromEnv()
	home := ""
	if *ownerUID < 0 {
		m, err := install.ReadMetadata(layout.InstallFile())
		if err != nil {
			fmt.Fprintln(os.Stderr, "bangerd-root:", err, "(or pass --owner-uid)")
			return 2
		}
		*ownerUID, home = m.OwnerUID, m.OwnerHome
		if *ownerGID < 0 {
			*ownerGID = m.OwnerGID
		}
	}
	if u, err := user.LookupId(strconv.Itoa(*ownerUID)); err == nil {
		if home == "" {
			home = u.HomeDir
		}
		if *ownerGID < 0 {
			*ownerGID, _ = strconv.Atoi(u.Gid)
		}
	}
	if *ownerGID < 0 {
		*ownerGID = *ownerUID
	}
	if home == "" {
		home = "/nonexistent"
	}
	// The helper reads the same config as the owner daemon (system file,
	// then the owner's), only for the network settings it validates against.
	cfg, err := config.Load(config.LoadOptions{Files: config.Files(layout, paths.User{Home: home}), Home: home, Host: config.DetectHost()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bangerd-root: config:", err)
		return 2
	}
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	rc := roothelper.Config{
		OwnerUID: *ownerUID, OwnerGID: *ownerGID, Layout: layout,
		Bridge: cfg.Network.Bridge, CIDR: cfg.Network.CIDR, Log: log, NetNS: *netns,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *cleanup {
		if err := roothelper.Cleanup(ctx, rc); err != nil {
			fmt.Fprintln(os.Stderr, "bangerd-root: cleanup:", err)
			return 1
		}
		return 0
	}
	if err := roothelper.OpenTunDevice(); err != nil {
		log.Warn("unprivileged VMMs may not be able to open their taps", "err", err)
	}
	srv, err := roothelper.New(rc)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	defer srv.Close()
	ln, err := roothelper.Listen(rc)
	if err != nil {
		log.Error("listen", "err", err)
		return 1
	}
	log.Info("bangerd-root ready", "socket", layout.HelperSocket(), "owner_uid", *ownerUID, "version", buildinfo.Get().String())
	if err := srv.Serve(ctx, ln, 10*time.Second); err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	return 0
}
