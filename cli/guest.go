package cli

import (
	"context"
	"flag"

	"github.com/ebrainpool/ebrainpool/sandbox"
)

// guestExecCommand runs a command in a session of its own, inside a
// sandbox (see sandbox.GuestExec).
func guestExecCommand() *Command {
	return &Command{
		Name: "guest-exec", Usage: "-- COMMAND [ARG...]", Hidden: true,
		Summary: "Run COMMAND in a session of its own (inside a sandbox, for a process given a terminal).",
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			return sandbox.GuestExec(env.Args)
		},
	}
}
