package cli

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"

	fyneapp "fyne.io/fyne/v2/app"
	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/ui"
)

// guiCommands are the desktop app's commands; "gui" runs when ebrainpool is
// started without a subcommand.
func guiCommands() []*Command {
	return []*Command{guiCommand(), guiWindowsCommand()}
}

func guiCommand() *Command {
	var df daemonFlags
	var show string
	var verbose bool
	return &Command{
		Name: "gui", Usage: "[flags]",
		Summary:  "Run the desktop app: the tray icon, peer browser and request popups, with the daemon in the same process (the default).",
		Details:  quitDetails,
		FlagArgs: map[string]string{"show": "peers|sessions|settings|none"},
		Flags: func(fs *flag.FlagSet) {
			df.register(fs)
			fs.BoolVar(&verbose, "v", false, "log debug messages")
			fs.StringVar(&show, "show", "", "open a window at start: peers, sessions, settings or none (default: peers when the desktop has no tray, else none); if eBrainPool already runs, it shows that window")
		},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() != 0 {
				return usageError("gui takes no arguments")
			}
			if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
				return errors.New("no display: run it inside a desktop session (or run `ebrainpool daemon` for the headless service)")
			}
			switch show {
			case "", "peers", "sessions", "settings", "none":
			default:
				return usageError("-show takes peers, sessions, settings or none, not %q", show)
			}
			relayFlatpakBuses(ctx, slog.New(slog.NewTextHandler(env.Stderr, nil)))
			conn, err := dbus.ConnectSessionBus()
			if err != nil {
				return fmt.Errorf("connecting to the session bus (run it inside a desktop session): %w", err)
			}
			defer conn.Close()
			// Started again: the flags go to the running app (or it says
			// why they cannot), which shows its window.
			if running, err := df.handToRunning(ctx, env, conn); running {
				if err == nil && show != "none" {
					_, err = ui.ShowRunning(conn, cmp.Or(show, "peers"))
				}
				return err
			} else if err != nil {
				return err
			}
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level}))
			d, err := df.newDaemon(ctx, env, log, conn)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			a := fyneapp.NewWithID(ui.AppID)
			// The windows are drawn by a window process started when
			// one opens (the GL driver stays out of this process).
			windows := []string{"/proc/self/exe", "gui-windows"}
			if verbose {
				windows = append(windows, "-v")
			}
			opts := ui.Options{App: a, Backend: d, Logger: log, SystemTray: true, ParkWhenIdle: true, WindowProcess: windows}
			if id := flatpakApp(); id != "" {
				opts.AutostartFile, opts.Exec = flatpakAutostart(id)
			}
			if opts.Notifier, err = ui.NewNotifier(conn); err != nil {
				log.Info("no desktop notifications for requests", "err", err)
			}
			u := ui.New(opts)
			if err := ui.ExportWindows(conn, u); err != nil {
				return err
			}
			if show == "" && !ui.TrayHostPresent(conn) {
				log.Warn("no system tray on this desktop: showing the peer browser instead (after closing it, start eBrainPool again to reopen it)")
				show = "peers"
			}
			u.Show(show)
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			go func() {
				// The daemon stopping on its own (e.g. no session bus) ends
				// the app too.
				select {
				case err := <-done:
					if err != nil {
						log.Error("eBrainPool stopped", "err", err)
					}
					done <- err
					cancel()
				case <-ctx.Done():
				}
			}()
			u.Run(ctx)
			cancel()
			return <-done
		},
	}
}

// guiWindowsCommand is the desktop app's window process: its windows and
// popups, started by the app when one opens (descriptor 3 is its
// connection to the app) and ending a few seconds after the last closed.
func guiWindowsCommand() *Command {
	var verbose bool
	return &Command{
		Name:    "gui-windows",
		Summary: "Draw the desktop app's windows (started by the desktop app).",
		Hidden:  true,
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&verbose, "v", false, "log debug messages")
		},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			f := os.NewFile(3, "desktop app")
			conn, err := net.FileConn(f)
			if err != nil {
				return errors.New("gui-windows is started by the desktop app (`ebrainpool gui`), not by hand")
			}
			f.Close()
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: level})).With("process", "windows")
			opts := ui.Options{App: fyneapp.NewWithID(ui.AppID), Logger: log}
			if id := flatpakApp(); id != "" {
				opts.AutostartFile, opts.Exec = flatpakAutostart(id)
			}
			return ui.RunWindows(ctx, opts, conn)
		},
	}
}
