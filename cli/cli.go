// Package cli implements the ebrainpool command line: one binary with
// subcommands, each with its own --help. The command table (commands())
// is the one source of --help, the manual page (man.go) and the shell
// completions (complete.go).
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
	"sync/atomic"
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
// commands ("sandbox start"): the first word is then a group, and
// `ebrainpool sandbox` lists the group's commands.
type Command struct {
	Name    string
	Summary string
	Usage   string // arguments after the name, for --help
	// Details are more paragraphs for --help and the manual page (blank
	// lines between paragraphs; `code` is set in bold in the page).
	Details string
	Hidden  bool // internal commands (run inside containers)
	// ShowExits: --help lists the exit statuses (run).
	ShowExits bool
	Run       func(ctx context.Context, env *Env, fs *flag.FlagSet) error
	// Flags, if set, declares the command's flags on fs before parsing.
	Flags func(fs *flag.FlagSet)
	// Verbatim > 0: after this many arguments the rest of the command line
	// is taken as it is, flags included (a command to run: sandbox exec).
	Verbatim int
	// Args says what each argument is, for the shell completions: a kind
	// of completeKinds; a last kind ending in "..." repeats.
	Args []string
	// FlagArgs says what a flag's value is, for the completions: a kind,
	// or the accepted words separated by "|".
	FlagArgs map[string]string
}

// errUsage marks errors that should print the command's usage.
var errUsage = errors.New("usage")

// usageError reports bad arguments; the caller prints usage after it.
func usageError(format string, a ...any) error {
	return &usageErr{fmt.Sprintf(format, a...)}
}

type usageErr struct{ msg string }

func (e *usageErr) Error() string        { return e.msg }
func (e *usageErr) Is(target error) bool { return target == errUsage }

func commands() []*Command {
	var all []*Command
	all = append(all, setupCommands()...)
	all = append(all, sandboxCommands()...)
	all = append(all, tunnelCommands()...)
	all = append(all, appCommands()...)
	all = append(all, peerCommands()...)
	all = append(all, rulesCommands()...)
	all = append(all, guiCommands()...)
	all = append(all, manCommand(), versionCommand(), completionCommand(), completeCommand(), guestExecCommand())
	return all
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

// Main runs the command line and returns the process exit code (see
// exitcodes.go). Only the output a command is asked for goes to stdout
// (listings, --help, --version); errors and progress go to stderr.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 {
		// No subcommand: the desktop app, when this build has it.
		if gui, _ := find(cmds, []string{"gui"}); gui != nil {
			args = []string{"gui"}
		}
	}
	if len(args) == 0 || isHelp(args[0]) {
		printTopUsage(stdout, cmds)
		return ExitOK
	}
	switch args[0] {
	case "help":
		if len(args) == 1 {
			printTopUsage(stdout, cmds)
			return ExitOK
		}
		// `ebrainpool help CMD` is `ebrainpool CMD --help`.
		return Main(append(append([]string(nil), args[1:]...), "--help"), stdin, stdout, stderr)
	case "--version", "-version", "-V":
		fmt.Fprintf(stdout, "ebrainpool %s\n", Version())
		return ExitOK
	}
	cmd, rest := find(cmds, args)
	if cmd == nil {
		return unknownCommand(cmds, args, stdout, stderr)
	}
	fs := newFlagSet(cmd)
	help, err := parseArgs(fs, rest, cmd.Verbatim)
	if help {
		printUsage(stdout, cmd, fs)
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "ebrainpool %s: %v\n", cmd.Name, err)
		printShortUsage(stderr, cmd)
		return ExitUsage
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var caught atomic.Value // the signal that cancelled ctx
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			caught.Store(s)
			cancel()
			signal.Stop(sigs) // a second one stops the process at once
		case <-ctx.Done():
		}
	}()
	env := &Env{Args: fs.Args(), Stdin: stdin, Stdout: stdout, Stderr: stderr}
	err = cmd.Run(ctx, env, fs)
	if err == nil {
		return ExitOK
	}
	var silent silentExit
	if !errors.As(err, &silent) {
		fmt.Fprintf(stderr, "ebrainpool %s: %v\n", cmd.Name, err)
	}
	if errors.Is(err, errUsage) {
		printShortUsage(stderr, cmd)
		return ExitUsage
	}
	if s, ok := caught.Load().(syscall.Signal); ok {
		return 128 + int(s)
	}
	return exitCode(err)
}

// newFlagSet is cmd's flag set with its flags declared; its own output
// is discarded (Main prints usage and errors).
func newFlagSet(cmd *Command) *flag.FlagSet {
	fs := flag.NewFlagSet("ebrainpool "+cmd.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if cmd.Flags != nil {
		cmd.Flags(fs)
	}
	return fs
}

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

// group is the visible commands whose name starts with the word word
// and another word ("sandbox" → "sandbox start", ...), sorted.
func group(cmds []*Command, word string) []*Command {
	var out []*Command
	for _, c := range cmds {
		if w := strings.Fields(c.Name); !c.Hidden && len(w) > 1 && w[0] == word {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// unknownCommand handles a command line that names no command: a group
// alone (`ebrainpool sandbox`) lists its commands; anything else is a
// usage error with the nearest commands.
func unknownCommand(cmds []*Command, args []string, stdout, stderr io.Writer) int {
	if sub := group(cmds, args[0]); len(sub) > 0 {
		if len(args) == 1 || isHelp(args[1]) {
			printGroupUsage(stdout, args[0], sub)
			return ExitOK
		}
		if strings.HasPrefix(args[1], "-") {
			fmt.Fprintf(stderr, "ebrainpool %s: give a command before the flags\n\n", args[0])
			printGroupUsage(stderr, args[0], sub)
			return ExitUsage
		}
		fmt.Fprintf(stderr, "ebrainpool: unknown command %q%s\n", args[0]+" "+args[1], didYouMean(suggestCommands(cmds, args[:2])))
		fmt.Fprintf(stderr, "Run 'ebrainpool %s' for its commands.\n", args[0])
		return ExitUsage
	}
	if strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, "ebrainpool: unknown flag %s before the command\n", args[0])
	} else {
		fmt.Fprintf(stderr, "ebrainpool: unknown command %q%s\n", args[0], didYouMean(suggestCommands(cmds, args[:1])))
	}
	fmt.Fprintln(stderr, "Run 'ebrainpool --help' for the commands.")
	return ExitUsage
}

// didYouMean is the suffix naming suggestions, or "".
func didYouMean(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("; did you mean %q?", s[0])
	}
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = fmt.Sprintf("%q", x)
	}
	return "; did you mean one of " + strings.Join(q, ", ") + "?"
}

func printTopUsage(w io.Writer, cmds []*Command) {
	fmt.Fprintln(w, "eBrainPool: run applications from your colleagues' machines, sandboxed there, shown here.")
	fmt.Fprintln(w, "\nusage: ebrainpool COMMAND [flags] [args]   (ebrainpool COMMAND --help for details)")
	fmt.Fprintln(w, "       ebrainpool --version")
	fmt.Fprintln(w, "\ncommands:")
	sorted := append([]*Command(nil), cmds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, c := range sorted {
		if c.Hidden {
			continue
		}
		fmt.Fprintf(w, "  %-22s %s\n", c.Name, plain(c.Summary))
	}
	fmt.Fprintln(w, "\nExit statuses: ebrainpool run --help, or EXIT STATUS in man ebrainpool.")
}

func printGroupUsage(w io.Writer, word string, sub []*Command) {
	fmt.Fprintf(w, "usage: ebrainpool %s COMMAND [flags] [args]   (ebrainpool %s COMMAND --help for details)\n\ncommands:\n", word, word)
	for _, c := range sub {
		fmt.Fprintf(w, "  %-22s %s\n", c.Name, plain(c.Summary))
	}
}

// usageLine is "usage: ebrainpool NAME USAGE".
func usageLine(cmd *Command) string {
	return strings.TrimSpace("usage: ebrainpool " + cmd.Name + " " + cmd.Usage)
}

// printShortUsage follows a usage error on stderr.
func printShortUsage(w io.Writer, cmd *Command) {
	fmt.Fprintf(w, "%s\nRun 'ebrainpool %s --help' for details.\n", usageLine(cmd), cmd.Name)
}

// printUsage is --help: usage, summary, details and flags.
func printUsage(w io.Writer, cmd *Command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "%s\n\n%s\n", usageLine(cmd), plain(cmd.Summary))
	if cmd.Details != "" {
		fmt.Fprintf(w, "\n%s\n", plain(strings.TrimSpace(cmd.Details)))
	}
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	if len(flags) > 0 {
		fmt.Fprintln(w, "\nflags:")
	}
	for _, f := range flags {
		name, usage := flag.UnquoteUsage(f)
		head := "  --" + f.Name
		if name != "" {
			head += " " + name
		}
		if !zeroDefault(f) {
			usage += " (default: " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "%s\n        %s\n", head, usage)
	}
	if cmd.ShowExits {
		fmt.Fprintf(w, "\n%s\n", exitStatusText())
	}
}

// plain is text of the table without its markup (`code`, bold in the
// manual page).
func plain(s string) string { return strings.ReplaceAll(s, "`", "") }
