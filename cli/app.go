package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// appCommands are the request-flow subcommands: the daemon and the
// commands that talk to it over D-Bus.
func appCommands() []*Command {
	return []*Command{
		daemonCommand(), idCommand(), peersCommand(), appsCommand(), runCommand(), openCommand(),
		pendingCommand(), answerCommand("allow", true), answerCommand("deny", false), blockCommand(),
		sessionsCommand(), endCommand(), shareCommand(true), shareCommand(false), localAppsCommand(),
	}
}

// daemonFlags are the flags the daemon and the desktop app share, and the
// start-up they drive.
type daemonFlags struct {
	listen      string
	noDiscovery bool
	peers       peerFlag
	domains     domainFlag
}

func (f *daemonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.listen, "listen", "", fmt.Sprintf("control address (default: all addresses, the port from Settings, else %d; when that is taken, one the system chooses)", config.DefaultControlPort))
	fs.BoolVar(&f.noDiscovery, "no-discovery", false, "do not use avahi (give peers with --peer or `ebrainpool peer add`)")
	fs.Var(&f.domains, "browse-domain", "also browse this unicast DNS domain for peers (wide-area DNS-SD; besides Settings' browse_domains; repeatable)")
	fs.Var(&f.peers, "peer", "add a peer by address, kept across restarts: FINGERPRINT@HOST[:PORT][=NAME], FINGERPRINT the full one or its short form, HOST a host name or IP address ([IPv6]:PORT) (repeatable); given to the running eBrainPool if one runs")
}

// newDaemon makes the daemon (bus nil: it connects to the session bus
// itself) and adds the hand-given peers; its Run prints the banner once it
// serves (so whoever reads it can use the API at once); until ctx ends,
// SIGUSR1 logs the process's stats (logStatsOnSignal).
func (f *daemonFlags) newDaemon(ctx context.Context, env *Env, log *slog.Logger, bus *dbus.Conn) (*daemon.Daemon, error) {
	logStatsOnSignal(ctx, log)
	dirs, err := config.UserDirs()
	if err != nil {
		return nil, err
	}
	var d *daemon.Daemon
	d, err = daemon.New(daemon.Options{Dirs: dirs, Listen: f.listen, NoDiscovery: f.noDiscovery, BrowseDomains: f.domains, Logger: log,
		SessionBus: bus, ClientProcess: clientProcess(), InFlatpak: flatpakApp() != "",
		Ready: func() { printBanner(env.Stdout, d) }})
	if err != nil {
		return nil, fmt.Errorf("starting eBrainPool: %w", err)
	}
	if err := f.peers.addTo(d); err != nil {
		return nil, err
	}
	return d, nil
}

// quitDetails is what quitting does, for gui and daemon.
const quitDetails = "Quitting (the desktop app's Quit in its tray, SIGTERM or SIGINT, the desktop session ending) ends the sessions peers run here " +
	"and stops the sandboxes that run, together and within 5 seconds (an init that does not stop in 3 is killed), as the log says; " +
	"one that could not be stopped in time is stopped once idle by the next start."

func daemonCommand() *Command {
	var df daemonFlags
	var level string
	return &Command{
		Name: "daemon", Usage: "[--listen ADDR] [--no-discovery] [--peer FP@HOST[:PORT][=NAME]]...",
		Summary:  "Run eBrainPool without the GUI: discovery, sharing, launches and the D-Bus API.",
		Details:  quitDetails,
		FlagArgs: map[string]string{"log-level": "debug|info|warn|error"},
		Flags: func(fs *flag.FlagSet) {
			df.register(fs)
			fs.StringVar(&level, "log-level", "info", "debug, info, warn or error")
		},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				return usageError("--log-level: %v", err)
			}
			log := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: lv}))
			relayFlatpakBuses(ctx, log)
			// Started again: the flags go to the one that runs, or it
			// says why they cannot.
			if conn, err := dbus.ConnectSessionBus(); err == nil {
				running, err := df.handToRunning(ctx, env, conn)
				conn.Close()
				switch {
				case running && err == nil && len(df.peers) == 0:
					return errors.New("eBrainPool already runs for this user (the desktop app or another `ebrainpool daemon`)")
				case running:
					return err
				}
			}
			d, err := df.newDaemon(ctx, env, log, nil)
			if err != nil {
				return err
			}
			return d.Run(ctx)
		},
	}
}

// logStatsOnSignal logs the process's goroutines, open descriptors and
// memory each time it gets SIGUSR1 (`kill -USR1 PID`), until ctx ends: a
// long-running daemon's leaks show without a debugger (the soak test
// reads them).
func logStatsOnSignal(ctx context.Context, log *slog.Logger) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGUSR1)
	go func() {
		defer signal.Stop(sigs)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sigs:
				runtime.GC() // the heap in use, not what awaits collection
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				fds, _ := os.ReadDir("/proc/self/fd") // one is ReadDir's own
				threads, _ := os.ReadDir("/proc/self/task")
				log.Info("process stats", "goroutines", runtime.NumGoroutine(), "fds", len(fds)-1,
					"heap_kib", ms.HeapAlloc>>10, "sys_kib", ms.Sys>>10, "threads", len(threads), "gc", ms.NumGC)
			}
		}
	}()
}

// printBanner tells who the daemon is and where peers reach it (the desktop
// app prints it too).
func printBanner(w io.Writer, d *daemon.Daemon) {
	fmt.Fprintf(w, "eBrainPool daemon: %q %s, peers reach it on port %d\n", d.Settings().DisplayName, d.Identity().Fingerprint(), d.ControlAddr().Port)
	if note := d.PortNote(); note != "" {
		fmt.Fprintln(w, note)
	}
	if err := d.SandboxError(); err != nil {
		fmt.Fprintf(w, "not sharing apps: %v\n", err)
	}
}

func idCommand() *Command {
	var asJSON bool
	return &Command{
		Name: "id", Usage: "[--json]", Summary: "Show your identity: fingerprint and its short form (created on first use).",
		Flags: func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print JSON") },
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() != 0 {
				return usageError("id takes no arguments")
			}
			dirs, err := config.UserDirs()
			if err != nil {
				return err
			}
			id, err := identity.LoadOrCreate(dirs.IdentityKey(), "ebrainpool")
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(env.Stdout, idView(id.Fingerprint()))
			}
			fmt.Fprintf(env.Stdout, "%s\n%s\n", id.Fingerprint(), id.Fingerprint().Short())
			return nil
		},
	}
}

// listCommand is a command that lists what the daemon knows: a table, or
// with --json an array of view(item) ([] when empty).
func listCommand[T, V any](name, summary, header string, fetch func(*dbusapi.Client, context.Context) ([]T, error), row func(T) string, view func(T) V) *Command {
	var asJSON bool
	return &Command{
		Name: name, Usage: "[--json]", Summary: summary,
		Flags: func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print JSON") },
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() != 0 {
				return usageError("%s takes no arguments", name)
			}
			return withClient(ctx, func(c *dbusapi.Client) error {
				items, err := fetch(c, ctx)
				if err != nil {
					return err
				}
				if asJSON {
					return printList(env.Stdout, items, view)
				}
				tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, header)
				for _, it := range items {
					fmt.Fprintln(tw, row(it))
				}
				return tw.Flush()
			})
		},
	}
}

func pendingCommand() *Command {
	return listCommand("pending", "List requests from peers waiting for your answer.", "ID\tPEER\tFROM\tAPP\tFIRST TIME\tDENIED IN",
		(*dbusapi.Client).Pending, func(r dbusapi.Request) string {
			left := time.Until(time.Unix(r.Deadline, 0)).Round(time.Second)
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%v\t%s", r.ID, r.PeerName, r.From, r.App, r.FirstTime, left)
		}, requestView)
}

func sessionsCommand() *Command {
	return listCommand("sessions", "List apps peers run here and apps you run on peers.", "ID\tDIRECTION\tPEER\tAPP\tSINCE\tSTATE",
		(*dbusapi.Client).Sessions, func(s dbusapi.Session) string {
			return strings.Join([]string{s.ID, string(s.Direction), s.PeerName, s.App, time.Unix(s.Since, 0).Format(time.TimeOnly), string(s.State)}, "\t")
		}, sessionView)
}

func appsCommand() *Command {
	var asJSON bool
	return &Command{
		Name: "apps", Usage: "[--json] PEER", Summary: "List the apps PEER shares (PEER: name, host or fingerprint prefix).",
		Args:  []string{"peer"},
		Flags: func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print JSON") },
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			peer, err := onePeer(fs)
			if err != nil {
				return err
			}
			return withClient(ctx, func(c *dbusapi.Client) error {
				apps, err := c.Apps(ctx, peer)
				if err != nil {
					return err
				}
				if asJSON {
					return printList(env.Stdout, apps, appView)
				}
				tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "APP\tNAME\tDESCRIPTION")
				for _, a := range apps {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", a.ID, a.Name, a.Comment)
				}
				return tw.Flush()
			})
		},
	}
}

// catalogLookup bounds the look-up of an app's visible name in the
// peer's catalog, after the peer said it does not share an app of the
// name given.
const catalogLookup = 10 * time.Second

func runCommand() *Command {
	var detach bool
	var folders folderFlags
	var disp displayFlags
	return &Command{
		Name: "run", Usage: "[--detach] [--folder DIR[:ro]]... [--trusted-display|--protected-display|--isolated-display] PEER APP",
		Summary: "Run APP from PEER with its windows here; waits until it ends.",
		Details: "APP is a desktop ID from `ebrainpool apps PEER`, or an app's visible name there (\"XTerm\"), " +
			"ignoring case, when only one app has it. Progress goes to standard error. " +
			"When the app ran, run exits with the app's own status; otherwise with one of eBrainPool's. " +
			"A folder of --folder appears in the app's home as \"NAME's FOLDER\" (`/home/guest/alice's Pictures`) while it runs; " +
			"nothing else of yours is served (see `ebrainpool open` for files). " +
			"The app sees and controls only its own windows on your display unless --trusted-display gave it this peer's app " +
			"your whole display (remembered; --protected-display takes it back), or --isolated-display a display of its own " +
			"in the peer's sandbox whose windows alone are shown here through xpra (remembered; needs xpra on both computers; " +
			"the default on a display without the X SECURITY extension, when xpra is installed).",
		ShowExits: true,
		Args:      []string{"peer", "app"},
		FlagArgs:  map[string]string{"folder": "file"},
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&detach, "detach", false, "return once the app runs")
			fs.Var(&folders, "folder", folderFlagUsage)
			disp.add(fs)
		},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() != 2 {
				return usageError("expected PEER APP")
			}
			if err := disp.check(); err != nil {
				return err
			}
			peer, app := fs.Arg(0), fs.Arg(1)
			return withClient(ctx, func(c *dbusapi.Client) error {
				if err := disp.apply(ctx, c, env.Stderr, peer, app); err != nil {
					return err
				}
				// APP is asked for as given: a desktop ID costs nothing more.
				// Only when the peer does not share an app of that ID is APP
				// looked up by name in its catalog, and asked for again.
				p := &runProgress{w: env.Stderr, app: app, holdAsking: true}
				if len(folders) > 0 {
					fmt.Fprintf(env.Stderr, "%s: bringing %s\n", app, sharedSummary(nil, folders))
				}
				status, err := c.RunWith(ctx, peer, app, nil, folders, detach, p.stage)
				var le *dbusapi.LaunchError
				if errors.As(err, &le) && le.Outcome == dbusapi.OutcomeNotShared && ctx.Err() == nil {
					lookCtx, cancel := context.WithTimeout(ctx, catalogLookup)
					apps, cerr := c.Apps(lookCtx, peer)
					cancel()
					if cerr == nil {
						id, rerr := resolveApp(peer, app, apps)
						if rerr != nil {
							return rerr
						}
						if id != app {
							if err := disp.apply(ctx, c, env.Stderr, peer, id); err != nil {
								return err
							}
							p = &runProgress{w: env.Stderr, app: id}
							status, err = c.RunWith(ctx, peer, id, nil, folders, detach, p.stage)
							app = id
						}
					}
				}
				if ctx.Err() != nil {
					return errors.New("interrupted: the session was ended")
				}
				if err == nil && status > 0 {
					fmt.Fprintf(env.Stderr, "%s: exited with status %d\n", app, status)
				}
				return runError(app, status, err)
			})
		},
	}
}

// runProgress prints a launch's stages on stderr, "APP: STAGE". With
// holdAsking, the first stage (asking) is printed only with the next one:
// a launch refused at once (for an app the peer does not share, which run
// then asks for by name) prints nothing but its error.
type runProgress struct {
	w          io.Writer
	app        string
	holdAsking bool
	held       string
}

func (p *runProgress) stage(stage string) {
	if p.holdAsking {
		p.holdAsking = false
		if dbusapi.Stage(stage) == dbusapi.StageAsking {
			p.held = stage
			return
		}
	}
	if p.held != "" {
		fmt.Fprintf(p.w, "%s: %s\n", p.app, p.held)
		p.held = ""
	}
	fmt.Fprintf(p.w, "%s: %s\n", p.app, stage)
}

func answerCommand(name string, allow bool) *Command {
	var remember bool
	verb := "Deny"
	if allow {
		verb = "Allow"
	}
	return &Command{
		Name: name, Usage: "[--remember] ID", Summary: verb + " a pending request (see `ebrainpool pending`).",
		Args: []string{"request"},
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&remember, "remember", false, "remember the answer for this peer and app")
		},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() != 1 {
				return usageError("expected one request ID")
			}
			return withClient(ctx, func(c *dbusapi.Client) error { return c.Answer(ctx, fs.Arg(0), allow, remember) })
		},
	}
}

func blockCommand() *Command {
	return &Command{
		Name: "block", Usage: "PEER|REQUEST-ID", Summary: "Block a peer: its requests are refused without asking you.",
		Args: []string{"peer-or-request"},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			peer, err := onePeer(fs)
			if err != nil {
				return err
			}
			return withClient(ctx, func(c *dbusapi.Client) error { return c.Block(ctx, peer) })
		},
	}
}

func endCommand() *Command {
	return &Command{
		Name: "end", Usage: "ID", Summary: "End a session (see `ebrainpool sessions`).",
		Args: []string{"session"},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() != 1 {
				return usageError("expected one session ID")
			}
			return withClient(ctx, func(c *dbusapi.Client) error { return c.EndSession(ctx, fs.Arg(0)) })
		},
	}
}

func shareCommand(share bool) *Command {
	var all bool
	name, summary, kind := "share", "Share apps installed here with peers (by desktop ID; see `ebrainpool local-apps`).", "local-app..."
	if !share {
		name, summary, kind = "unshare", "Stop sharing apps.", "shared-app..."
	}
	return &Command{
		Name: name, Usage: "[--all] [APP...]", Summary: summary,
		Args:  []string{kind},
		Flags: func(fs *flag.FlagSet) { fs.BoolVar(&all, "all", false, "every installed graphical app") },
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if !all && fs.NArg() == 0 {
				return usageError("name apps or give --all")
			}
			dirs, installed, s, err := localApps()
			if err != nil {
				return err
			}
			if all {
				s = catalog.Sharing{All: share}
			}
			for _, id := range fs.Args() {
				found := false
				for _, a := range installed {
					found = found || a.ID == id
				}
				if share && !found {
					return fmt.Errorf("no graphical app with desktop ID %q is installed (see `ebrainpool local-apps`)", id)
				}
				s.Set(id, share)
			}
			return catalog.SaveSharing(dirs.SharingFile(), s)
		},
	}
}

// localApps reads, without the daemon, the user's directories, the
// graphical apps installed here and the sharing choice.
func localApps() (config.Dirs, []catalog.App, catalog.Sharing, error) {
	dirs, err := config.UserDirs()
	if err != nil {
		return dirs, nil, catalog.Sharing{}, err
	}
	s, err := catalog.LoadSharing(dirs.SharingFile())
	if err != nil {
		return dirs, nil, s, err
	}
	apps, _ := catalog.Scan(catalog.DataDirs(dirs.Home))
	return dirs, apps, s, nil
}

func localAppsCommand() *Command {
	var asJSON bool
	return &Command{
		Name: "local-apps", Usage: "[--json]", Summary: "List the graphical apps installed here and whether each is shared.",
		Flags: func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print JSON") },
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() != 0 {
				return usageError("local-apps takes no arguments")
			}
			_, apps, s, err := localApps()
			if err != nil {
				return err
			}
			if asJSON {
				return printList(env.Stdout, apps, func(a catalog.App) localAppJSON { return localAppView(a, s) })
			}
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "APP\tNAME\tSHARED\tCOMMAND")
			for _, a := range apps {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", a.ID, a.Name, s.Shared(a.ID), strings.Join(a.Exec, " "))
			}
			return tw.Flush()
		},
	}
}
