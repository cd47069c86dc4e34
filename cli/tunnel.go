package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/ebrainpool/ebrainpool/tunnel"
)

// tunnelEnvList is a repeatable KEY=VALUE flag.
type tunnelEnvList []string

func (l *tunnelEnvList) String() string { return strings.Join(*l, ",") }
func (l *tunnelEnvList) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("%q is not KEY=VALUE", v)
	}
	*l = append(*l, v)
	return nil
}

// tunnelCommands are the tunnel subcommands (grant, guest endpoint).
func tunnelCommands() []*Command {
	return []*Command{guestSSHDCommand(), grantCommand()}
}

// guestSSHDCommand is the endpoint started inside the container with the
// forwarded socket on stdin/stdout.
func guestSSHDCommand() *Command {
	var hostKey, authKey, command, x11Dir, dir string
	var envs tunnelEnvList
	var handshake, idle time.Duration
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
			conn, err := tunnel.StdioConn()
			if err != nil {
				return err
			}
			tunnel.TuneEndpointProcess() // this process serves only this connection
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
				Logger:           slog.New(slog.NewTextHandler(env.Stderr, nil)),
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

// grantCommand opens a manual grant for a requester with stock OpenSSH.
func grantCommand() *Command {
	var listen, allow, hostKey, app, knownHosts string
	var idle time.Duration
	return &Command{
		Name:  "grant",
		Usage: "--listen IP --allow IP --host-key PATH --app CMD -- ENDPOINT-CMD [ARGS...]",
		Summary: "Open a one-session port forward for a requester using plain `ssh -X`; " +
			"each connection is handed to ENDPOINT-CMD on stdin/stdout.",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&listen, "listen", "", "local `IP` to listen on (the LAN address the requester reaches)")
			fs.StringVar(&allow, "allow", "", "the requester's `IP`, the only source accepted")
			fs.StringVar(&hostKey, "host-key", "", "the endpoint's host key `PATH` (created if missing), to pin")
			fs.StringVar(&app, "app", "", "the approved command, as the requester will type it")
			fs.StringVar(&knownHosts, "known-hosts", "ebrainpool_known_hosts", "known_hosts `FILE` name shown in the ssh command")
			fs.DurationVar(&idle, "idle", tunnel.DefaultForwardIdleTimeout, "close the forward if unused this long")
		},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			listenIP, allowIP := net.ParseIP(listen), net.ParseIP(allow)
			if listenIP == nil || allowIP == nil || hostKey == "" || app == "" {
				return usageError("--listen, --allow, --host-key and --app are required")
			}
			// TODO(sandbox): replace ENDPOINT-CMD with the sandbox's attach
			// Handoff (guest-sshd started in the requester's container
			// with the socket as stdin/stdout) once sandbox exposes one.
			if fs.NArg() == 0 {
				return usageError("ENDPOINT-CMD is required, e.g. -- lxc-attach -n NAME -- ebrainpool guest-sshd ...")
			}
			signer, err := tunnel.LoadOrCreateHostKey(hostKey)
			if err != nil {
				return err
			}
			g, err := tunnel.OpenGrant(ctx, tunnel.GrantConfig{
				Forward: tunnel.ForwardConfig{
					ListenIP:    listenIP,
					AllowFrom:   allowIP,
					IdleTimeout: idle,
					Handoff:     tunnel.ExecHandoff{Path: fs.Arg(0), Args: fs.Args()[1:], Stderr: env.Stderr},
					Logger:      slog.New(slog.NewTextHandler(env.Stderr, nil)),
				},
				HostKey:        signer.PublicKey(),
				Command:        strings.Fields(app),
				KnownHostsFile: knownHosts,
			})
			if err != nil {
				return err
			}
			defer g.Close()
			fmt.Fprintf(env.Stdout, "# for %s, within %s; save this line in %s:\n%s\n# then run:\n%s\n",
				allowIP, idle, knownHosts, g.KnownHosts, g.SSHCommand)
			select {
			case <-g.Done():
			case <-ctx.Done():
				g.Close()
			}
			err = g.Err()
			if errors.Is(err, tunnel.ErrForwardExpired) || errors.Is(err, tunnel.ErrForwardClosed) {
				fmt.Fprintln(env.Stdout, "# grant closed:", err)
				return nil
			}
			return err
		},
	}
}
