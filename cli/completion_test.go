package cli

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// TestMain lets the test binary stand in for ebrainpool (the completion
// scripts run `ebrainpool __complete`): run as ebrainpool with
// EBP_CLI_TEST_MAIN=1, it is the command line.
func TestMain(m *testing.M) {
	if os.Getenv("EBP_CLI_TEST_MAIN") == "1" {
		os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// shellEnv is an environment whose PATH starts with a directory holding
// "ebrainpool" (this test binary as the command line) and the completion
// scripts written by `ebrainpool completion SHELL`.
type shellEnv struct {
	dir string
	env []string
}

func newShellEnv(t *testing.T) *shellEnv {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(dir, "ebrainpool")); err != nil {
		t.Fatal(err)
	}
	for _, sh := range []struct{ shell, file string }{
		{"bash", "completions/ebrainpool"}, {"zsh", "zsh/_ebrainpool"}, {"fish", "fish/ebrainpool.fish"},
	} {
		code, out, errs := run(t, "completion", sh.shell)
		if code != 0 || errs != "" {
			t.Fatalf("completion %s: exit %d %s", sh.shell, code, errs)
		}
		path := filepath.Join(dir, sh.file)
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{"PATH=" + dir + ":" + os.Getenv("PATH"), "EBP_CLI_TEST_MAIN=1", "HOME=" + t.TempDir(),
		"DBUS_SESSION_BUS_ADDRESS=" + os.Getenv("DBUS_SESSION_BUS_ADDRESS"), "LC_ALL=C.UTF-8", "XDG_CONFIG_HOME=" + t.TempDir(), "XDG_DATA_HOME=" + t.TempDir()}
	return &shellEnv{dir: dir, env: env}
}

func (e *shellEnv) shell(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = e.env
	cmd.Dir = e.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil || errb.Len() > 0 {
		t.Fatalf("%s %q: %v\nstdout:\n%s\nstderr:\n%s", name, args, err, out.Bytes(), errb.Bytes())
	}
	return out.String()
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// completionCases: a command line up to the cursor and the candidates
// (values) a shell must offer: exactly those, or (prefix "⊇") at least.
var completionCases = []struct {
	line string
	want []string
	some bool // want ⊆ candidates
}{
	{"ebrainpool sa", []string{"sandbox"}, false},
	{"ebrainpool se", []string{"sessions", "setup"}, false},
	{"ebrainpool ", []string{"allow", "apps", "completion", "help", "peers", "run", "sandbox", "version"}, true},
	{"ebrainpool sandbox ", []string{"exec", "export", "list", "remove", "reset", "start", "stop"}, false},
	{"ebrainpool sandbox l", []string{"list"}, false},
	{"ebrainpool apps ", []string{"alice-pc", "bob"}, false},
	{"ebrainpool apps --json b", []string{"bob"}, false},
	{"ebrainpool apps --", []string{"--help", "--json"}, false},
	{"ebrainpool run bob ", []string{"blocked", "denied", "org.gnome.Calculator", "uxterm", "xlogo", "xterm"}, true},
	{"ebrainpool run bob x", []string{"xlogo", "xterm"}, false},
	{"ebrainpool run --detach bob x", []string{"xlogo", "xterm"}, false},
	{"ebrainpool run bob xlogo ", nil, false},
	{"ebrainpool allow ", []string{"5f1c2a9e0b7d"}, false},
	{"ebrainpool deny --remember 5", []string{"5f1c2a9e0b7d"}, false},
	{"ebrainpool end ", []string{"9a4e11c07b52", "c3d0f5a1e866"}, false},
	{"ebrainpool block ", []string{"5f1c2a9e0b7d", "alice-pc", "bob"}, false},
	{"ebrainpool daemon --log-level ", []string{"debug", "error", "info", "warn"}, false},
	{"ebrainpool gui --show se", []string{"sessions", "settings"}, false},
	{"ebrainpool completion ", []string{"bash", "fish", "zsh"}, false},
	{"ebrainpool help sa", []string{"sandbox"}, false},
	{"ebrainpool help sandbox e", []string{"exec", "export"}, false},
	{"ebrainpool sandbox list --", []string{"--help", "--json"}, false},
	{"ebrainpool sandbox exec somepeer ls", []string{"ls"}, true},
	{"ebrainpool -", []string{"--help", "--version"}, false},
	{"ebrainpool setup --user roo", []string{"root"}, false},
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func checkCandidates(t *testing.T, line string, got, want []string, some bool) {
	t.Helper()
	got = sorted(got)
	if some {
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("%q: candidates %q lack %q", line, got, w)
			}
		}
		return
	}
	if !slices.Equal(got, sorted(want)) {
		t.Errorf("%q: candidates %q, want %q", line, got, sorted(want))
	}
}

// bashCompletes runs the completion function as bash's programmable
// completion does for line (cursor at its end) and returns COMPREPLY.
const bashCompletes = `
COMP_LINE=$1
COMP_POINT=${#COMP_LINE}
read -r -a COMP_WORDS <<<"$COMP_LINE"
[[ $COMP_LINE == *' ' ]] && COMP_WORDS+=('')
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
spec=$(complete -p ebrainpool) || exit 1
[[ $spec == 'complete -F _ebrainpool ebrainpool' ]] || { echo "complete -p: $spec" >&2; exit 1; }
_ebrainpool ebrainpool "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}" || exit 1
printf '%s\n' "${COMPREPLY[@]}"
`

func TestBashCompletion(t *testing.T) {
	testenv.RequireTools(t, "bash", "dbus-daemon")
	startFake(t)
	e := newShellEnv(t)
	script := filepath.Join(e.dir, "completions/ebrainpool")
	for _, tc := range completionCases {
		t.Run(tc.line, func(t *testing.T) {
			got := lines(e.shell(t, "bash", "--norc", "--noprofile", "-c", "source "+script+"\n"+bashCompletes, "bash", tc.line))
			checkCandidates(t, tc.line, got, tc.want, tc.some)
		})
	}
	// bash breaks words at '=' and ':': only what follows is replaced.
	t.Run("--log-level=w", func(t *testing.T) {
		got := lines(e.shell(t, "bash", "--norc", "--noprofile", "-c", "source "+script+"\n"+bashCompletes, "bash", "ebrainpool daemon --log-level=w"))
		checkCandidates(t, "--log-level=w", got, []string{"warn"}, false)
	})
	// Loaded on demand by the bash-completion package from where the
	// Debian package installs the script.
	t.Run("bash-completion loads it", func(t *testing.T) {
		const loader = "/usr/share/bash-completion/bash_completion"
		if _, err := os.Stat(loader); err != nil {
			testenv.Skip(t, "the bash-completion package is not installed")
		}
		script := "BASH_COMPLETION_USER_DIR=" + e.dir + "\nsource " + loader + "\n" +
			"complete -p ebrainpool >/dev/null 2>&1 && { echo loaded too early >&2; exit 1; }\n" +
			"_completion_loader ebrainpool\n" + bashCompletes
		got := lines(e.shell(t, "bash", "--norc", "--noprofile", "-c", script, "bash", "ebrainpool run bob x"))
		checkCandidates(t, "bash-completion", got, []string{"xlogo", "xterm"}, false)
	})
}

// zshCompletes completes a line in a real interactive zsh (zpty) whose
// fpath has the script where compinit finds it, as it finds the package's
// /usr/share/zsh/vendor-completions/_ebrainpool: zshCompletes DIR OUT
// LINE types LINE and a Tab; every match the completion adds is appended
// to OUT (compadd wrapped, as zsh-capture-completion does), then
// "--done--" once the completion finished.
const zshCompletes = `
zmodload zsh/zpty || exit 1
zpty z zsh -f -i || exit 1
zpty -w z "PS1=''; fpath=($1 \$fpath); autoload -U compinit; compinit -u -D"
zpty -w z "print -r -- bound=\${_comps[ebrainpool]} >>$2"
zpty -w z "compadd() { if [[ \${@[1,(i)(-|--)]} == *-(O|A|D)\\ * ]]; then builtin compadd \"\$@\"; return; fi; local -a __hits; builtin compadd -A __hits \"\$@\"; (( \$#__hits )) && print -l -- \$__hits >>$2; builtin compadd \"\$@\" }"
zpty -w z "__ebp_done() { print -- --done-- >>$2 }; comppostfuncs=(__ebp_done)"
zpty -w -n z "$3"$'\t'
for i in {1..100}; do
	grep -q -- '^--done--$' $2 2>/dev/null && break
	sleep 0.1
	zpty -r -t z junk >/dev/null 2>&1
done
zpty -d z
grep -q -- '^--done--$' $2 || { print -u2 "the completion did not finish"; exit 1 }
`

func TestZshCompletion(t *testing.T) {
	testenv.RequireTools(t, "zsh", "dbus-daemon")
	startFake(t)
	e := newShellEnv(t)
	for i, tc := range completionCases {
		t.Run(tc.line, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), fmt.Sprintf("matches-%d", i))
			e.shell(t, "zsh", "-f", "-c", zshCompletes, "zsh", filepath.Join(e.dir, "zsh"), out, tc.line)
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			bound := false
			for _, l := range lines(string(b)) {
				switch {
				case l == "bound=_ebrainpool":
					bound = true
				case strings.HasPrefix(l, "bound="), l == "--done--":
				default:
					got = append(got, l)
				}
			}
			if !bound {
				t.Fatalf("compinit did not bind _ebrainpool to ebrainpool:\n%s", b)
			}
			checkCandidates(t, tc.line, got, tc.want, tc.some)
		})
	}
	t.Run("--log-level=w", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "matches")
		e.shell(t, "zsh", "-f", "-c", zshCompletes, "zsh", filepath.Join(e.dir, "zsh"), out, "ebrainpool daemon --log-level=w")
		b, _ := os.ReadFile(out)
		if !slices.Contains(lines(string(b)), "warn") {
			t.Errorf("matches:\n%s", b)
		}
	})
}

func lastWord(line string) string {
	if strings.HasSuffix(line, " ") {
		return ""
	}
	f := strings.Fields(line)
	return f[len(f)-1]
}

// fish completes with its own engine: complete -C.
func TestFishCompletion(t *testing.T) {
	testenv.RequireTools(t, "fish", "dbus-daemon")
	startFake(t)
	e := newShellEnv(t)
	script := filepath.Join(e.dir, "fish/ebrainpool.fish")
	for _, tc := range completionCases {
		t.Run(tc.line, func(t *testing.T) {
			out := e.shell(t, "fish", "--no-config", "-c", "source $argv[1]; complete -C $argv[2]", script, tc.line)
			var got []string
			for _, l := range lines(out) {
				v, _, _ := strings.Cut(l, "\t")
				got = append(got, v)
			}
			checkCandidates(t, tc.line, got, tc.want, tc.some)
		})
	}
}

// Without a daemon, the scripts offer no peers and print no error.
func TestCompletionWithoutDaemon(t *testing.T) {
	testenv.RequireTools(t, "bash")
	noDaemon(t)
	e := newShellEnv(t)
	t0 := time.Now()
	out := e.shell(t, "bash", "--norc", "--noprofile", "-c", "source "+filepath.Join(e.dir, "completions/ebrainpool")+"\n"+bashCompletes, "bash", "ebrainpool run ")
	if strings.TrimSpace(out) != "" {
		t.Errorf("candidates without a daemon: %q", out)
	}
	if took := time.Since(t0); took > 2*time.Second {
		t.Errorf("completing without a daemon took %s", took)
	}
}

// The scripts name every visible command and flag, none of the hidden.
func TestCompletionScriptsFromTable(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		t.Run(sh, func(t *testing.T) {
			code, out, _ := run(t, "completion", sh)
			if code != 0 {
				t.Fatalf("exit %d", code)
			}
			for _, c := range commands() {
				w := strings.Fields(c.Name)
				last := w[len(w)-1]
				if c.Hidden {
					continue
				}
				if !strings.Contains(out, last) {
					t.Errorf("%s script lacks %q", sh, c.Name)
				}
				fs := newFlagSet(c)
				fs.VisitAll(func(f *flag.Flag) {
					if !strings.Contains(out, f.Name) {
						t.Errorf("%s script lacks --%s of %s", sh, f.Name, c.Name)
					}
				})
			}
			for _, hidden := range []string{"guest-sshd", "x11-client", "sandbox-helper", "guest-init", "sandbox bench", "man"} {
				if strings.Contains(out, "'"+hidden+"'") || strings.Contains(out, "'"+hidden+" ") || strings.Contains(out, "("+hidden+")") {
					t.Errorf("%s script offers hidden %s", sh, hidden)
				}
			}
		})
	}
}
