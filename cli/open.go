package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/ui"
)

// folderFlags is the repeatable --folder DIR[:ro]: folders a launch
// brings into the app's home.
type folderFlags []dbusapi.Folder

func (f *folderFlags) String() string { return "" }
func (f *folderFlags) Set(v string) error {
	d := dbusapi.Folder{Path: v}
	if p, ok := strings.CutSuffix(v, ":ro"); ok {
		if _, err := os.Stat(v); err != nil { // a folder really named "x:ro" is that folder
			d = dbusapi.Folder{Path: p, ReadOnly: true}
		}
	}
	abs, err := filepath.Abs(d.Path)
	if err != nil {
		return err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a folder", d.Path)
	}
	d.Path = abs
	*f = append(*f, d)
	return nil
}

const folderFlagUsage = "bring the folder `DIR` into the app's home, read-write (DIR:ro read-only); repeatable"

// sharedSummary says what a launch brings, for its progress.
func sharedSummary(files []string, folders []dbusapi.Folder) string {
	return strings.Join(dbusapi.Labels(files, folders), ", ")
}

func openCommand() *Command {
	var peer, app string
	var folders folderFlags
	var detach, list, gui bool
	var disp displayFlags
	return &Command{
		Name: "open", Usage: "[--peer PEER] [--app APP] [--folder DIR[:ro]]... [--list] [--detach] [--trusted-display|--protected-display|--isolated-display] FILE...",
		Summary: "Open your files with an app a peer shares; saving writes them back here.",
		Details: "The peers' shared apps that open every FILE (by its type, against each app's MimeType=) are asked for; " +
			"with exactly one, or one left by --peer and --app, it runs with the files as its arguments and its windows here. " +
			"Only the files given (and the folders of --folder) are served to the peer's sandbox, over the session's own " +
			"connection: the app sees them under `/home/guest`, nothing else of yours, and they are gone from there when it ends. " +
			"With several apps to choose from, open lists them and exits with status 2: run it again with --peer and --app " +
			"(or use --list to see them). No app for the files is exit status 85. Otherwise open exits as `run` does. " +
			"With --gui (the desktop entry file managers offer as \"Open with eBrainPool\") the files, and the folders of --folder, go to the desktop app: its peer browser shows the choice, " +
			"the launch and any error instead, started if it does not run; an error before that is also a desktop notification.",
		ShowExits: true,
		Args:      []string{"file..."},
		FlagArgs:  map[string]string{"peer": "peer", "folder": "file"},
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&peer, "peer", "", "the peer whose app to use (name, host or fingerprint prefix)")
			fs.StringVar(&app, "app", "", "the app to use (desktop ID or visible name)")
			fs.Var(&folders, "folder", folderFlagUsage)
			fs.BoolVar(&list, "list", false, "list the apps that open the files, run none")
			fs.BoolVar(&detach, "detach", false, "return once the app runs")
			fs.BoolVar(&gui, "gui", false, "choose and launch in the desktop app (started if needed) instead of here; for file managers")
			disp.add(fs)
		},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() == 0 {
				return usageError("name the files to open")
			}
			if err := disp.check(); err != nil {
				return err
			}
			var files []string
			for _, f := range fs.Args() {
				abs, err := filepath.Abs(f)
				if err != nil {
					return err
				}
				st, err := os.Stat(abs)
				if err != nil {
					return err
				}
				if st.IsDir() && !gui {
					return usageError("%s is a folder: bring folders with --folder", f)
				}
				files = append(files, abs)
			}
			if gui {
				if peer != "" || app != "" || list || detach {
					return usageError("--gui takes only files and --folder: the desktop app asks for the rest")
				}
				return openInGUI(ctx, env, files, folders)
			}
			return withClient(ctx, func(c *dbusapi.Client) error {
				cands, err := c.AppsForFiles(ctx, peer, files)
				if err != nil {
					var le *dbusapi.LaunchError
					if errors.As(err, &le) && le.Outcome == dbusapi.OutcomeNotShared {
						return &codedError{code: ExitNotShared, err: &outcomeError{outcome: le.Outcome, msg: le.Message}}
					}
					return err
				}
				if app != "" {
					var keep []dbusapi.Candidate
					for _, a := range cands {
						if a.App == app || strings.EqualFold(a.App, strings.TrimSuffix(app, ".desktop")) || strings.EqualFold(strings.TrimSpace(a.AppName), strings.TrimSpace(app)) {
							keep = append(keep, a)
						}
					}
					if len(keep) == 0 {
						return &codedError{code: ExitNotShared, err: &outcomeError{outcome: dbusapi.OutcomeNotShared,
							msg: fmt.Sprintf("no app %q that opens %s is shared%s; these are: %s", app, names(files), onPeer(peer), candList(cands))}}
					}
					cands = keep
				}
				if list {
					printCandidates(env.Stdout, cands)
					return nil
				}
				if len(cands) > 1 {
					printCandidates(env.Stderr, cands)
					return usageError("%d shared apps open %s: choose one with --peer and --app", len(cands), names(files))
				}
				a := cands[0]
				p := &runProgress{w: env.Stderr, app: a.App}
				fmt.Fprintf(env.Stderr, "%s: opening %s with %s of %s\n", a.App, sharedSummary(files, folders), a.AppName, a.PeerName)
				if err := disp.apply(ctx, c, env.Stderr, a.Peer, a.App); err != nil {
					return err
				}
				status, err := c.RunWith(ctx, a.Peer, a.App, files, folders, detach, p.stage)
				if ctx.Err() != nil {
					return errors.New("interrupted: the session was ended")
				}
				if err == nil && status > 0 {
					fmt.Fprintf(env.Stderr, "%s: exited with status %d\n", a.App, status)
				}
				return runError(a.App, status, err)
			})
		},
	}
}

// appStart is how long open --gui waits for the desktop app it started.
const appStart = 20 * time.Second

// openInGUI has the desktop app open the files (open --gui), starting it
// if no eBrainPool runs; errors are also shown as a desktop notification
// (a file manager runs this without a terminal).
func openInGUI(ctx context.Context, env *Env, files []string, folders []dbusapi.Folder) error {
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		return fmt.Errorf("connecting to the session bus (run it inside a desktop session): %w", err)
	}
	defer conn.Close()
	err = askToOpen(ctx, conn, files, folders, startDesktopApp)
	if err != nil {
		if nerr := ui.NotifyError(conn, "Could not open "+names(files)+" with eBrainPool", err); nerr != nil {
			fmt.Fprintln(env.Stderr, "ebrainpool:", nerr)
		}
	}
	return err
}

// askToOpen asks the running desktop app to open the files, or starts
// one with startApp (its channel gets the app's exit) and asks it once it
// answers.
func askToOpen(ctx context.Context, conn *dbus.Conn, files []string, folders []dbusapi.Folder, startApp func() (<-chan error, error)) error {
	running, err := ui.OpenRunning(conn, files, folders)
	if running || err != nil {
		return err
	}
	exited, err := startApp()
	if err != nil {
		return fmt.Errorf("starting the desktop app: %w", err)
	}
	deadline := time.Now().Add(appStart)
	for {
		running, err := ui.OpenRunning(conn, files, folders)
		// Until it has exported its windows it looks like `ebrainpool daemon`.
		if running && !errors.Is(err, ui.ErrHeadless) {
			return err
		}
		select {
		case err := <-exited:
			if err == nil {
				err = errors.New("it exited")
			}
			return fmt.Errorf("the desktop app did not start: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the desktop app did not answer within %s of its start", appStart)
		}
	}
}

// startDesktopApp starts `ebrainpool gui --show none` on its own: it
// outlives the command that started it.
func startDesktopApp() (<-chan error, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the ebrainpool binary: %w", err)
	}
	cmd := exec.Command(exe, "gui", "--show", "none")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return exited, nil
}

func names(files []string) string {
	var n []string
	for _, f := range files {
		n = append(n, filepath.Base(f))
	}
	return strings.Join(n, ", ")
}

func onPeer(peer string) string {
	if peer == "" {
		return ""
	}
	return " by " + peer
}

func candList(cands []dbusapi.Candidate) string {
	var s []string
	for _, a := range cands {
		s = append(s, fmt.Sprintf("%s (%s) of %s", a.App, a.AppName, a.PeerName))
	}
	return strings.Join(s, ", ")
}

func printCandidates(w io.Writer, cands []dbusapi.Candidate) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tAPP\tNAME")
	for _, a := range cands {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", a.PeerName, a.App, a.AppName)
	}
	tw.Flush()
}
