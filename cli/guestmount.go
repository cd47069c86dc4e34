package cli

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"os"

	"github.com/ebrainpool/ebrainpool/tunnel"
)

// shareSpecs is the repeatable --share NAME[:ro] of guest-mount.
type shareSpecs []tunnel.MountSpec

func (s *shareSpecs) String() string { return "" }
func (s *shareSpecs) Set(v string) error {
	m, err := tunnel.ParseMountSpec(v)
	if err != nil {
		return err
	}
	*s = append(*s, m)
	return nil
}

// guestMountCommand is the privileged stage of an endpoint that brings
// the requester's files: run as the container's root, it mounts each
// share in the guest's home in a mount namespace of its own and runs the
// endpoint (ARGV) there as the guest (tunnel.GuestMountMain).
func guestMountCommand() *Command {
	var shares shareSpecs
	return &Command{
		Name:    "guest-mount",
		Usage:   "--share NAME[:ro]... -- ARGV...",
		Summary: "Mount the requester's shares for one session and run its endpoint (run inside the sandbox, as its root).",
		Hidden:  true,
		Flags: func(fs *flag.FlagSet) {
			fs.Var(&shares, "share", "a share's `NAME` in the guest's home, :ro for read-only (repeatable)")
		},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() == 0 {
				return usageError("give the endpoint's command after --")
			}
			// stderr is the endpoint's claim socket (guest-sshd --claim-fd 2):
			// this stage writes nothing there.
			code, err := tunnel.GuestMountMain(tunnel.GuestMountConfig{Shares: shares, Argv: fs.Args(),
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil && isSocket(os.Stderr) {
				// The host reads it there and tells the requester.
				tunnel.ReportStageFailure(os.Stderr, err)
				return exitError(1)
			}
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError(code)
			}
			return nil
		},
	}
}

// isSocket reports whether f is a socket (the claim descriptor).
func isSocket(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeSocket != 0
}
