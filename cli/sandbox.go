package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ebrainpool/ebrainpool/sandbox"
)

// limitFlags are the sandbox resource limits settable on the command line.
type limitFlags struct {
	memory string
	cpus   float64
	pids   int
	disk   string
}

func (l *limitFlags) declare(fs *flag.FlagSet) {
	d := sandbox.DefaultLimits()
	fs.StringVar(&l.memory, "memory", formatBytes(d.MemoryBytes), "memory limit (e.g. 512M, 2G)")
	fs.Float64Var(&l.cpus, "cpus", d.CPUs, "CPU limit in CPUs")
	fs.IntVar(&l.pids, "pids", d.Pids, "process and thread limit")
	fs.StringVar(&l.disk, "disk", formatBytes(d.DiskBytes), "size of the sandbox's home, all it may write to this disk (e.g. 512M, 2G; a larger home made before is kept until reset)")
}

func (l *limitFlags) limits() (sandbox.Limits, error) {
	mem, err := parseBytes(l.memory)
	if err != nil {
		return sandbox.Limits{}, usageError("--memory: %v", err)
	}
	disk, err := parseBytes(l.disk)
	if err != nil {
		return sandbox.Limits{}, usageError("--disk: %v", err)
	}
	lim := sandbox.Limits{MemoryBytes: mem, CPUs: l.cpus, Pids: l.pids, DiskBytes: disk}
	if err := lim.Validate(); err != nil {
		return lim, usageError("%v", err)
	}
	return lim, nil
}

func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}} {
		if strings.HasSuffix(s, u.suf) || strings.HasSuffix(s, u.suf+"B") || strings.HasSuffix(s, u.suf+"IB") {
			s = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(s, "IB"), "B"), u.suf)
			mult = u.m
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size like 512M or 2G", s)
	}
	return int64(n * float64(mult)), nil
}

// humanBytes is a size for people: 2.0 GiB, 512 MiB.
func humanBytes(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
}

func formatBytes(n int64) string {
	switch {
	case n%(1<<30) == 0:
		return fmt.Sprintf("%dG", n>>30)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%dM", n>>20)
	}
	return strconv.FormatInt(n, 10)
}

func newManager(lf *limitFlags) (*sandbox.Manager, error) {
	cfg := sandbox.Config{}
	if lf != nil {
		lim, err := lf.limits()
		if err != nil {
			return nil, err
		}
		cfg.Limits = lim
	}
	return sandbox.NewManager(cfg)
}

func onePeer(fs *flag.FlagSet) (string, error) {
	if fs.NArg() != 1 {
		return "", usageError("expected exactly one PEER")
	}
	return fs.Arg(0), nil
}

func sandboxCommands() []*Command {
	var lf limitFlags
	var asRoot, jsonOut bool
	var whenIdle time.Duration
	var envs stringList
	var helperPath string
	var initOpts sandbox.InitOptions
	return []*Command{
		{
			Name: "sandbox start", Usage: "[limits] PEER", Args: []string{"sandbox"},
			Summary: "Create (if needed) and start PEER's sandbox.",
			Flags:   lf.declare,
			Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
				peer, err := onePeer(fs)
				if err != nil {
					return err
				}
				m, err := newManager(&lf)
				if err != nil {
					return err
				}
				t := time.Now()
				if err := m.Start(ctx, peer); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "sandbox %s for %s is running (%s)\n", m.ContainerName(peer), peer, time.Since(t).Round(time.Millisecond))
				return nil
			},
		},
		{
			Name: "sandbox exec", Usage: "[--root] [--env K=V]... PEER -- CMD [ARGS...]",
			Verbatim: 1, Args: []string{"sandbox", "command"},
			Summary: "Run CMD inside PEER's sandbox (started if needed) as the guest user, with this terminal's stdio.",
			Flags: func(fs *flag.FlagSet) {
				lf.declare(fs)
				fs.BoolVar(&asRoot, "root", false, "run as the container's root (still unprivileged on the host)")
				fs.Var(&envs, "env", "environment variable K=V for the command (repeatable)")
			},
			Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
				if fs.NArg() < 2 {
					return usageError("expected PEER -- CMD")
				}
				peer, args := fs.Arg(0), fs.Args()[1:]
				if args[0] == "--" {
					args = args[1:]
				}
				if len(args) == 0 {
					return usageError("no command after --")
				}
				m, err := newManager(&lf)
				if err != nil {
					return err
				}
				if err := m.Start(ctx, peer); err != nil {
					return err
				}
				code, err := m.Run(ctx, peer, sandbox.ExecSpec{Args: args, AsRoot: asRoot, Env: envs,
					Stdin: stdFile(env.Stdin, os.Stdin), Stdout: stdFile(env.Stdout, os.Stdout), Stderr: stdFile(env.Stderr, os.Stderr)})
				if err != nil {
					return err
				}
				if code != 0 {
					return exitError(code)
				}
				return nil
			},
		},
		{
			Name: "sandbox stop", Usage: "[--when-idle DURATION] PEER", Args: []string{"sandbox"},
			Summary: "Stop PEER's sandbox (its processes are killed), now or once idle.",
			Flags: func(fs *flag.FlagSet) {
				fs.DurationVar(&whenIdle, "when-idle", 0, "wait until nothing but init has run for this long, then stop")
			},
			Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
				peer, err := onePeer(fs)
				if err != nil {
					return err
				}
				m, err := newManager(nil)
				if err != nil {
					return err
				}
				if whenIdle > 0 {
					return m.StopWhenIdle(ctx, peer, whenIdle, 500*time.Millisecond)
				}
				return m.Stop(ctx, peer)
			},
		},
		{
			Name: "sandbox reset", Usage: "PEER", Args: []string{"sandbox"},
			Summary: "Put PEER's sandbox back to the base: its home and every file it wrote are deleted.",
			Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
				peer, err := onePeer(fs)
				if err != nil {
					return err
				}
				m, err := newManager(nil)
				if err != nil {
					return err
				}
				return m.Reset(ctx, peer)
			},
		},
		{
			Name: "sandbox remove", Usage: "PEER", Args: []string{"sandbox"},
			Summary: "Stop and delete PEER's sandbox with all its files.",
			Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
				peer, err := onePeer(fs)
				if err != nil {
					return err
				}
				m, err := newManager(nil)
				if err != nil {
					return err
				}
				return m.Remove(ctx, peer)
			},
		},
		{
			Name: "sandbox list", Usage: "[--json]",
			Summary: "List this user's sandboxes with their state.",
			Flags:   func(fs *flag.FlagSet) { fs.BoolVar(&jsonOut, "json", false, "print JSON") },
			Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
				if fs.NArg() != 0 {
					return usageError("sandbox list takes no arguments")
				}
				m, err := newManager(nil)
				if err != nil {
					return err
				}
				list, err := m.List()
				if err != nil {
					return err
				}
				if jsonOut {
					return printList(env.Stdout, list, sandboxView)
				}
				tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "PEER\tCONTAINER\tSTATE\tPROCS\tMEMORY\tCPU TIME\tDISK")
				for _, i := range list {
					tasks, mem, cpu, disk := "-", "-", "-", "-"
					if i.State == "RUNNING" {
						tasks, mem = strconv.Itoa(i.Pids), fmt.Sprintf("%.1f MiB", float64(i.Memory)/(1<<20))
						if i.CPU >= 0 {
							cpu = i.CPU.Round(time.Millisecond).String()
						}
					}
					if i.DiskLimit > 0 {
						disk = fmt.Sprintf("%.1f MiB of %s", float64(i.DiskBytes)/(1<<20), humanBytes(i.DiskLimit))
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", i.Peer, i.Name, i.State, tasks, mem, cpu, disk)
				}
				return tw.Flush()
			},
		},
		{
			Name: "sandbox export", Usage: "PEER FILE.tar.gz", Args: []string{"sandbox", "file"},
			Summary: "Write PEER's home directory in the sandbox to a .tar.gz archive.",
			Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
				if fs.NArg() != 2 {
					return usageError("expected PEER FILE")
				}
				peer, out := fs.Arg(0), fs.Arg(1)
				m, err := newManager(nil)
				if err != nil {
					return err
				}
				// Written beside the target and renamed: a failed export
				// never leaves a truncated archive under the final name.
				tmp, err := os.CreateTemp(filepath.Dir(out), ".export-*.tar.gz")
				if err != nil {
					return fmt.Errorf("creating %s: %w", out, err)
				}
				defer os.Remove(tmp.Name())
				if err := m.Export(ctx, peer, tmp); err != nil {
					tmp.Close()
					return err
				}
				if err := tmp.Close(); err != nil {
					return fmt.Errorf("writing %s: %w", out, err)
				}
				if err := os.Rename(tmp.Name(), out); err != nil {
					return fmt.Errorf("writing %s: %w", out, err)
				}
				fmt.Fprintf(env.Stdout, "exported %s's home to %s\n", peer, out)
				return nil
			},
		},
		sandboxBenchCommand(),
		{
			Name: "sandbox-helper", Hidden: true,
			Summary: "Starts sandboxes from a delegated systemd scope (started by ebrainpool itself).",
			Flags:   func(fs *flag.FlagSet) { fs.StringVar(&helperPath, "lxcpath", "", "the user's LXC path") },
			Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
				return sandbox.RunHelper(helperPath)
			},
		},
		{
			Name: "guest-init", Hidden: true,
			Summary: "The init of a sandbox (runs inside the container).",
			Flags: func(fs *flag.FlagSet) {
				fs.Int64Var(&initOpts.DiskBytes, "disk", 0, "size of the guest's home in bytes")
				fs.StringVar(&initOpts.StartID, "start", "", "marks this start's report")
			},
			Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
				return sandbox.GuestInit(initOpts)
			},
		},
	}
}

// stdFile returns the *os.File behind a standard stream, or def.
func stdFile(s any, def *os.File) *os.File {
	if f, ok := s.(*os.File); ok {
		return f
	}
	return def
}

// stringList is a repeatable KEY=VALUE flag (environment variables).
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("%q is not KEY=VALUE", v)
	}
	*s = append(*s, v)
	return nil
}

func sandboxBenchCommand() *Command {
	var cycles, warm int
	var cli, jsonOut bool
	return &Command{
		Name: "sandbox bench", Usage: "[--cycles N] [--warm N] [--cli] PEER", Hidden: true,
		Summary: "Time start/exec/stop cycles (and the LXC tools with --cli) and report leaks.",
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&cycles, "cycles", 20, "start/exec/stop cycles")
			fs.IntVar(&warm, "warm", 5, "warm execs per cycle")
			fs.BoolVar(&cli, "cli", false, "also time lxc-start/lxc-attach on the same container")
			fs.BoolVar(&jsonOut, "json", false, "print JSON")
		},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			peer, err := onePeer(fs)
			if err != nil {
				return err
			}
			m, err := newManager(nil)
			if err != nil {
				return err
			}
			r, err := m.Bench(ctx, sandbox.BenchOptions{Peer: peer, Cycles: cycles, Warm: warm, CLI: cli})
			if err != nil {
				return err
			}
			if jsonOut {
				return json.NewEncoder(env.Stdout).Encode(r)
			}
			r.WriteTable(env.Stdout)
			return nil
		},
	}
}
