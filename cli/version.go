package cli

import (
	"context"
	"flag"
	"fmt"
)

// version is eBrainPool's version, FyneApp.toml's Version (a test keeps
// them equal). A package build may set it from its own version:
//
//	go build -ldflags "-X github.com/ebrainpool/ebrainpool/cli.version=0.1.0-1" .
var version = "0.1.0"

// Version is the version this binary reports (--version, the manual page).
func Version() string { return version }

func versionCommand() *Command {
	return &Command{
		Name: "version", Summary: "Print the version of eBrainPool (as `ebrainpool --version` does).",
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() != 0 {
				return usageError("version takes no arguments")
			}
			_, err := fmt.Fprintf(env.Stdout, "ebrainpool %s\n", Version())
			return err
		},
	}
}
