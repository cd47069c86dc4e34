package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/app/session"
	"github.com/ebrainpool/ebrainpool/tunnel"
)

// tunnelCommands are the tunnel subcommands (grant, guest endpoint).
func tunnelCommands() []*Command {
	return []*Command{guestSSHDCommand(), guestMountCommand(), grantCommand(), x11ClientCommand()}
}

// x11ClientCommand is the requester's side of one session, started by the
// daemon (tunnel.RunAppProcess) so the X11 data path runs in a process of
// its own, tuned for it.
func x11ClientCommand() *Command {
	return &Command{
		Name:    "x11-client",
		Summary: "Run one app session's SSH client with X11 forwarding (started by the daemon).",
		Hidden:  true,
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if tunnel.ClientProcessMain() != 0 {
				return errors.New("x11-client: could not report the session's result")
			}
			return nil
		},
	}
}

// clientProcess is this binary as the daemon's X11 client process, or nil
// (the client then runs in the daemon) if the binary cannot be found.
func clientProcess() *tunnel.ClientProcess {
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	return &tunnel.ClientProcess{Path: exe, Args: []string{"x11-client"}}
}

// guestSSHDCommand is the endpoint started inside the container with the
// forwarded socket on stdin/stdout.
func guestSSHDCommand() *Command {
	var hostKey, authKey, command, x11Dir, dir string
	var envs stringList
	var handshake, idle time.Duration
	var claimFD int
	return &Command{
		Name:    "guest-sshd",
		Usage:   "--host-key PATH --authorized-key KEY (--command CMD | -- ARGV...)",
		Summary: "Serve one SSH session on stdin/stdout (run inside the sandbox).",
		Hidden:  true,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&hostKey, "host-key", "", "host key `PATH` (OpenSSH ed25519, created if missing)")
			fs.StringVar(&authKey, "authorized-key", "", "the one authorized public `KEY` (\"ssh-ed25519 AAAA...\")")
			fs.StringVar(&command, "command", "", "approved command, split on spaces (or give ARGV after --)")
			fs.StringVar(&x11Dir, "x11-dir", tunnel.DefaultX11Dir, "directory for X11 display sockets")
			fs.StringVar(&dir, "dir", "", "working directory of the app")
			fs.Var(&envs, "env", "`KEY=VALUE` for the app (repeatable)")
			fs.DurationVar(&handshake, "handshake-timeout", tunnel.DefaultHandshakeTimeout, "SSH handshake deadline")
			fs.DurationVar(&idle, "idle-timeout", tunnel.DefaultSessionIdle, "drop the connection if no channel opens within this")
			fs.IntVar(&claimFD, "claim-fd", -1, "once authenticated, ask the forward on descriptor `N` whether this connection is its session (a socket; with 2 the log is not written)")
		},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			argv := fs.Args()
			if len(argv) == 0 {
				argv = strings.Fields(command)
			}
			if hostKey == "" || authKey == "" || len(argv) == 0 {
				return usageError("--host-key, --authorized-key and a command are required")
			}
			signer, err := tunnel.LoadOrCreateHostKey(hostKey)
			if err != nil {
				return err
			}
			key, err := tunnel.ParseAuthorizedKey(authKey)
			if err != nil {
				return err
			}
			shares, err := tunnel.TakeGuestShares() // mounted by guest-mount
			if err != nil {
				return err
			}
			conn, err := tunnel.StdioConn()
			if err != nil {
				return err
			}
			tunnel.TuneRelayProcess() // this process serves only this connection
			logTo := env.Stderr
			var claim func(hostGone func()) error
			if claimFD >= 0 {
				claim = tunnel.ClaimOver(os.NewFile(uintptr(claimFD), "claim"), handshake)
				if claimFD == 2 {
					logTo = io.Discard // stderr carries the claim
				}
			}
			appEnv := []string(envs)
			if !hasEnv(appEnv, "PATH") {
				appEnv = append(appEnv, "PATH="+os.Getenv("PATH"))
			}
			if !hasEnv(appEnv, "HOME") {
				if h, err := os.UserHomeDir(); err == nil {
					appEnv = append(appEnv, "HOME="+h)
				}
			}
			return tunnel.ServeEndpoint(ctx, conn, tunnel.EndpointConfig{
				HostKey:          signer,
				AuthorizedKey:    key,
				Command:          argv,
				Env:              appEnv,
				Dir:              dir,
				X11Dir:           x11Dir,
				HandshakeTimeout: handshake,
				SessionIdle:      idle,
				Claim:            claim,
				Shares:           shares,
				Logger:           slog.New(slog.NewTextHandler(logTo, nil)),
			})
		},
	}
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, key+"=") {
			return true
		}
	}
	return false
}

// grantCommand opens a manual grant: a one-session forward into the
// requester's own sandbox, for someone with only OpenSSH.
func grantCommand() *Command {
	var listen, from, keyFile, app, knownHosts string
	var idle time.Duration
	return &Command{
		Name:  "grant",
		Usage: "--key FILE.pub --app APP [--listen IP] [--from IP]",
		Summary: "Let someone with only OpenSSH run APP here, in their own sandbox: opens a one-session " +
			"port forward and prints the `ssh -X` command (with the host key to pin).",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&keyFile, "key", "", "the requester's public key `FILE` (ssh-ed25519 ...)")
			fs.StringVar(&app, "app", "", "desktop ID of an installed app, or a command line")
			fs.StringVar(&listen, "listen", "", "local `IP` to listen on (default: this machine's first LAN address)")
			fs.StringVar(&from, "from", "", "the requester's `IP`, the only source accepted (default: 127.0.0.1 when listening on loopback)")
			fs.StringVar(&knownHosts, "known-hosts", "ebrainpool_known_hosts", "known_hosts `FILE` name shown in the ssh command")
			fs.DurationVar(&idle, "idle", tunnel.DefaultForwardIdleTimeout, "close the forward if unused this long")
		},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if keyFile == "" || app == "" || fs.NArg() > 0 {
				return usageError("--key and --app are required")
			}
			key, err := tunnel.ReadAuthorizedKeyFile(keyFile)
			if err != nil {
				return err
			}
			listenIP := net.ParseIP(listen)
			if listen == "" {
				listenIP = firstLANAddress()
			}
			if listenIP == nil {
				return usageError("--listen %q is not an IP address", listen)
			}
			fromIP := net.ParseIP(from)
			if from == "" && listenIP.IsLoopback() {
				fromIP = net.IPv4(127, 0, 0, 1)
			}
			if fromIP == nil {
				return usageError("give the requester's address with --from IP (only that address may connect)")
			}
			argv, err := grantArgv(app)
			if err != nil {
				return err
			}
			m, err := newManager(nil)
			if err != nil {
				return err
			}
			peer := string(identity.FingerprintOf(key))
			fmt.Fprintf(env.Stderr, "starting the sandbox of %s...\n", peer)
			// The sandbox stops once nothing but its init is left.
			stopIdle := func() {
				stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
				defer cancel()
				m.StopWhenIdle(stopCtx, peer, 0, 200*time.Millisecond)
			}
			prep, undo, err := session.Prepare(ctx, session.PrepareConfig{
				Sandboxes: m, Peer: peer, Key: key, Argv: argv,
				ListenIP: listenIP, AllowFrom: fromIP, IdleTimeout: idle, Release: stopIdle,
				Logger: slog.New(slog.NewTextHandler(env.Stderr, nil)),
			})
			if err != nil {
				return err
			}
			defer undo() // the forward closed, the sandbox stopped once idle
			fwd := prep.Forward
			host, port := fwd.Addr().IP.String(), fwd.Addr().Port
			fmt.Fprintf(env.Stdout, "# for %s, within %s; save this line in %s:\n%s\n# then run:\n%s\n",
				fromIP, idle, knownHosts, tunnel.KnownHostsLine(host, port, prep.HostKey),
				tunnel.OpenSSHCommand(host, port, knownHosts, tunnel.ShellJoin(argv)))
			select {
			case <-fwd.Done():
			case <-ctx.Done():
				fwd.Close()
			}
			err = fwd.Err()
			if errors.Is(err, tunnel.ErrForwardExpired) || errors.Is(err, tunnel.ErrForwardClosed) || errors.Is(err, tunnel.ErrTooManyAttempts) {
				fmt.Fprintln(env.Stdout, "# grant closed:", err)
				return nil
			}
			// A session took place; how the endpoint ended (the client
			// hanging up, the app exiting) is reported, not a failure.
			if err != nil {
				fmt.Fprintf(env.Stdout, "# session ended (%v)\n", err)
			} else {
				fmt.Fprintln(env.Stdout, "# session ended")
			}
			return nil
		},
	}
}

// grantArgv is an installed app's command (by desktop ID) or the words of
// a command line.
func grantArgv(app string) ([]string, error) {
	if dirs, err := config.UserDirs(); err == nil {
		apps, _ := catalog.Scan(catalog.DataDirs(dirs.Home))
		for _, a := range apps {
			if a.ID == app {
				return a.Exec, nil
			}
		}
	}
	argv, err := catalog.SplitExec(app)
	if err != nil || len(argv) == 0 {
		return nil, fmt.Errorf("--app %q is neither an installed app nor a command line", app)
	}
	return argv, nil
}

// firstLANAddress is the first non-loopback IPv4 address, or loopback.
func firstLANAddress() net.IP {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP
		}
	}
	return net.IPv4(127, 0, 0, 1)
}
