package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/ebrainpool/ebrainpool/sandbox"
)

func setupCommands() []*Command {
	var user string
	var remove, check bool
	return []*Command{{
		Name:     "setup",
		Usage:    "--user NAME [--remove] | --check [--user NAME]",
		FlagArgs: map[string]string{"user": "user"},
		Summary:  "One-time root setup so NAME can run sandboxes unprivileged (the only step that needs root).",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&user, "user", "", "desktop user to set up (required)")
			fs.BoolVar(&remove, "remove", false, "undo the setup for the user: stop its sandboxes, remove cgroups, state and the id ranges setup added")
			fs.BoolVar(&check, "check", false, "only check the prerequisites, and with --user what setup still has to do for NAME (no root needed)")
		},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if check {
				ps := sandbox.Preflight()
				if user != "" {
					ps = append(ps, sandbox.CheckUser(sandbox.DefaultLayout(), user)...)
				}
				if len(ps) == 0 {
					if user != "" {
						fmt.Fprintf(env.Stdout, "All prerequisites for unprivileged sandboxes are present, and %s is set up.\n", user)
					} else {
						fmt.Fprintln(env.Stdout, "All prerequisites for unprivileged sandboxes are present.")
					}
					return nil
				}
				for _, p := range ps {
					fmt.Fprintln(env.Stdout, "missing: "+p.String())
				}
				return fmt.Errorf("%d prerequisite(s) missing", len(ps))
			}
			if user == "" {
				return usageError("--user is required")
			}
			if fs.NArg() > 0 {
				return usageError("unexpected arguments %q", fs.Args())
			}
			return sandbox.Setup(sandbox.DefaultLayout(), sandbox.SetupOptions{User: user, Remove: remove, Out: env.Stdout})
		},
	}}
}
