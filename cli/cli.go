// Package cli implements the ebrainpool command line: one binary with
// subcommands, each with its own --help.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// Env is what a subcommand gets: its arguments and standard streams.
type Env struct {
	Args   []string
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Command is one subcommand. Name may contain a space for two-word
// commands ("sandbox start").
type Command struct {
	Name    string
	Summary string
	Usage   string // arguments after the name, for --help
	Hidden  bool   // internal commands (run inside containers)
	Run     func(ctx context.Context, env *Env, fs *flag.FlagSet) error
	// Flags, if set, declares the command's flags on fs before parsing.
	Flags func(fs *flag.FlagSet)
}

// errUsage marks errors that should print the command's usage.
var errUsage = errors.New("usage")

// usageError reports bad arguments; the caller prints usage after it.
func usageError(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

func commands() []*Command {
	var all []*Command
	all = append(all, setupCommands()...)
	all = append(all, sandboxCommands()...)
	all = append(all, tunnelCommands()...)
	all = append(all, appCommands()...)
	all = append(all, guiCommands()...)
	all = append(all, manCommand())
	return all
}

// Main runs the command line and returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 {
		// No subcommand: the desktop app, when this build has it.
		if gui, _ := find(cmds, []string{"gui"}); gui != nil {
			args = []string{"gui"}
		}
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printTopUsage(stdout, cmds)
		return 0
	}
	cmd, rest := find(cmds, args)
	if cmd == nil {
		fmt.Fprintf(stderr, "ebrainpool: unknown command %q\n\n", strings.Join(args, " "))
		printTopUsage(stderr, cmds)
		return 2
	}
	fs := flag.NewFlagSet("ebrainpool "+cmd.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: ebrainpool %s %s\n\n%s\n", cmd.Name, cmd.Usage, cmd.Summary)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(fs.Output(), "\nflags:")
			fs.PrintDefaults()
		}
	}
	if cmd.Flags != nil {
		cmd.Flags(fs)
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &Env{Args: fs.Args(), Stdin: stdin, Stdout: stdout, Stderr: stderr}
	if err := cmd.Run(ctx, env, fs); err != nil {
		fmt.Fprintf(stderr, "ebrainpool %s: %v\n", cmd.Name, err)
		if errors.Is(err, errUsage) {
			fs.Usage()
			return 2
		}
		var ec exitCoder
		if errors.As(err, &ec) {
			return ec.ExitCode()
		}
		return 1
	}
	return 0
}

// exitCoder lets a command choose its exit code (e.g. a remote app's status).
type exitCoder interface{ ExitCode() int }

// find picks the longest command name matching the start of args.
func find(cmds []*Command, args []string) (*Command, []string) {
	var best *Command
	bestLen := 0
	for _, c := range cmds {
		words := strings.Fields(c.Name)
		if len(words) > len(args) || len(words) <= bestLen {
			continue
		}
		match := true
		for i, w := range words {
			if args[i] != w {
				match = false
				break
			}
		}
		if match {
			best, bestLen = c, len(words)
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, args[bestLen:]
}

func printTopUsage(w io.Writer, cmds []*Command) {
	fmt.Fprintln(w, "eBrainPool: run applications from your colleagues' machines, sandboxed there, shown here.")
	fmt.Fprintln(w, "\nusage: ebrainpool COMMAND [flags] [args]   (ebrainpool COMMAND --help for details)")
	fmt.Fprintln(w, "\ncommands:")
	sorted := append([]*Command(nil), cmds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, c := range sorted {
		if c.Hidden {
			continue
		}
		fmt.Fprintf(w, "  %-22s %s\n", c.Name, c.Summary)
	}
}
