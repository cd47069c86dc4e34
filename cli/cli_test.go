package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// run runs the command line with buffers and returns its exit status,
// stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// noDaemon points the session bus at a socket nobody listens on.
func noDaemon(t *testing.T) {
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "no-bus"))
}

func TestHelpGoesToStdoutOnce(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"},
		{"peers", "--help"}, {"peers", "-h"}, {"peers", "-help"},
		{"apps", "bob", "--help"}, {"run", "--help"}, {"help", "run"},
		{"sandbox", "list", "--help"}, {"setup", "--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errs := run(t, args...)
			if code != ExitOK || errs != "" {
				t.Fatalf("exit %d, stderr %q", code, errs)
			}
			if n := strings.Count(out, "usage: ebrainpool"); n != 1 {
				t.Errorf("stdout has the usage %d times:\n%s", n, out)
			}
			if strings.Contains(out, "`") {
				t.Errorf("the help shows the table's markup:\n%s", out)
			}
		})
	}
}

func TestRunHelpListsExitStatuses(t *testing.T) {
	_, out, _ := run(t, "run", "--help")
	for _, s := range exitStatuses() {
		if !strings.Contains(out, "  "+s.Code+" ") {
			t.Errorf("run --help lacks exit status %s:\n%s", s.Code, out)
		}
	}
	if strings.Contains(out, "`") {
		t.Errorf("run --help shows markup:\n%s", out)
	}
}

func TestVersion(t *testing.T) {
	toml, err := os.ReadFile("../FyneApp.toml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Version = "(.*)"$`).FindSubmatch(toml)
	if m == nil {
		t.Fatal("no Version in FyneApp.toml")
	}
	if Version() != string(m[1]) {
		t.Fatalf("cli.version %q, FyneApp.toml's Version %q: keep them equal", Version(), m[1])
	}
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		code, out, errs := run(t, args...)
		if code != 0 || out != "ebrainpool "+Version()+"\n" || errs != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if code, _, errs := run(t, "version", "x"); code != ExitUsage || !strings.Contains(errs, "no arguments") {
		t.Errorf("version x: exit %d, stderr %q", code, errs)
	}
}

func TestUnknownCommandSuggests(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in stderr; "" for no suggestion
	}{
		{[]string{"peres"}, `did you mean one of "peers", "peer"?`},
		{[]string{"peer", "ad"}, `did you mean "peer add"?`},
		{[]string{"sesions"}, `did you mean "sessions"?`},
		{[]string{"loc"}, `did you mean "local-apps"?`},
		{[]string{"rnu"}, `did you mean "run"?`},
		{[]string{"lsit"}, `did you mean "sandbox list"?`},
		{[]string{"sandbox", "lst"}, `did you mean "sandbox list"?`},
		{[]string{"sandbox", "strat"}, `did you mean "sandbox start"?`},
		{[]string{"versoin"}, `did you mean "version"?`},
		{[]string{"xyzzy-frobnicate"}, ""},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errs := run(t, tc.args...)
			if code != ExitUsage || out != "" {
				t.Fatalf("exit %d, stdout %q", code, out)
			}
			if !strings.Contains(errs, "unknown command") {
				t.Errorf("stderr %q", errs)
			}
			if tc.want == "" && strings.Contains(errs, "did you mean") || !strings.Contains(errs, tc.want) {
				t.Errorf("stderr %q, want %q", errs, tc.want)
			}
		})
	}
}

func TestGroupAloneListsItsCommands(t *testing.T) {
	for _, args := range [][]string{{"sandbox"}, {"sandbox", "--help"}, {"help", "sandbox"}} {
		code, out, errs := run(t, args...)
		if code != ExitOK || errs != "" {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errs)
		}
		for _, c := range group(commands(), "sandbox") {
			if !strings.Contains(out, "  "+c.Name+" ") {
				t.Errorf("%v lacks %q:\n%s", args, c.Name, out)
			}
		}
		if strings.Contains(out, "sandbox bench") {
			t.Errorf("%v lists the hidden sandbox bench:\n%s", args, out)
		}
	}
	if code, out, errs := run(t, "sandbox", "--json"); code != ExitUsage || out != "" || !strings.Contains(errs, "sandbox list") {
		t.Errorf("sandbox --json: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestUnknownFlag(t *testing.T) {
	code, out, errs := run(t, "apps", "bob", "--jsn")
	if code != ExitUsage || out != "" || !strings.Contains(errs, `unknown flag --jsn; did you mean "--json"?`) ||
		!strings.Contains(errs, "usage: ebrainpool apps [--json] PEER") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, _, errs := run(t, "--bogus"); code != ExitUsage || !strings.Contains(errs, "unknown flag --bogus") {
		t.Fatalf("--bogus: exit %d, stderr %q", code, errs)
	}
}

// Flags after arguments reach the command: without a daemon every one of
// these gets as far as connecting (exit 80), none is a usage error.
func TestFlagsAfterArguments(t *testing.T) {
	noDaemon(t)
	for _, args := range [][]string{
		{"apps", "bob", "--json"},
		{"apps", "--json", "bob"},
		{"apps", "bob", "-json"},
		{"apps", "bob", "--json=true"},
		{"run", "bob", "xlogo", "--detach"},
		{"run", "bob", "--detach", "xlogo"},
		{"allow", "abc123", "--remember"},
		{"peers", "--json"},
		{"sessions", "--json"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errs := run(t, args...)
			if code != ExitNoDaemon || out != "" {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q", code, ExitNoDaemon, out, errs)
			}
			if !strings.Contains(errs, "no session bus") || strings.Contains(errs, "usage:") {
				t.Errorf("stderr %q", errs)
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		verbatim int
		want     []string // fs.Args()
		json     bool
		mem      string
		help     bool
		err      string
	}{
		{"flags after args", []string{"bob", "--json"}, 0, []string{"bob"}, true, "", false, ""},
		{"flags between", []string{"a", "--mem", "2G", "b"}, 0, []string{"a", "b"}, false, "2G", false, ""},
		{"equals form", []string{"--mem=1G", "a"}, 0, []string{"a"}, false, "1G", false, ""},
		{"one dash", []string{"-json", "-mem", "3G"}, 0, nil, true, "3G", false, ""},
		{"bool false", []string{"--json=false", "x"}, 0, []string{"x"}, false, "", false, ""},
		{"dashdash ends flags", []string{"a", "--", "--json", "-x"}, 0, []string{"a", "--json", "-x"}, false, "", false, ""},
		{"lone dash is an argument", []string{"-", "a"}, 0, []string{"-", "a"}, false, "", false, ""},
		{"verbatim tail", []string{"--json", "peer", "ls", "-l", "--json"}, 1, []string{"peer", "ls", "-l", "--json"}, true, "", false, ""},
		{"verbatim keeps dashdash", []string{"peer", "--", "sh", "-c", "x"}, 1, []string{"peer", "--", "sh", "-c", "x"}, false, "", false, ""},
		{"help anywhere", []string{"a", "--help"}, 0, []string{"a"}, false, "", true, ""},
		{"help after dashdash is an argument", []string{"--", "--help"}, 0, []string{"--help"}, false, "", false, ""},
		{"unknown flag", []string{"--jsn"}, 0, nil, false, "", false, `unknown flag --jsn; did you mean "--json"?`},
		{"missing value", []string{"a", "--mem"}, 0, nil, false, "", false, "flag --mem needs a value"},
		{"bad value", []string{"--json=maybe"}, 0, nil, false, "", false, `invalid value "maybe" for --json`},
		{"triple dash", []string{"---json"}, 0, nil, false, "", false, "bad flag syntax"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			js := fs.Bool("json", false, "")
			mem := fs.String("mem", "", "")
			help, err := parseArgs(fs, tc.args, tc.verbatim)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fs.Args(); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Errorf("args %q, want %q", got, tc.want)
			}
			if *js != tc.json || *mem != tc.mem || help != tc.help {
				t.Errorf("json %v mem %q help %v, want %v %q %v", *js, *mem, help, tc.json, tc.mem, tc.help)
			}
		})
	}
}

func TestNearest(t *testing.T) {
	for _, tc := range []struct {
		typed string
		cands []string
		want  []string
	}{
		{"peer", []string{"peers", "pending", "run"}, []string{"peers"}},
		{"pe", []string{"peers", "pending", "run"}, []string{"peers", "pending"}},
		{"p", []string{"peers", "pending"}, nil},
		{"rnu", []string{"run", "end", "id"}, []string{"run"}},
		{"sesions", []string{"sessions", "share"}, []string{"sessions"}},
		{"zzzzzz", []string{"sessions", "share"}, nil},
		{"PEERS", []string{"peers"}, []string{"peers"}},
	} {
		t.Run(tc.typed, func(t *testing.T) {
			if got := nearest(tc.typed, tc.cands); !slices.Equal(got, tc.want) {
				t.Errorf("nearest(%q) = %q, want %q", tc.typed, got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"kitten", "sitting", 3}, {"peer", "peers", 1}, {"rnu", "run", 1}, {"lsit", "list", 1}, {"ca", "abc", 3}, {"é", "e", 1}} {
		if d := editDistance(tc.a, tc.b); d != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, d, tc.d)
		}
	}
}

// A usage error prints the error and the usage on stderr, nothing on
// stdout, and exits 2.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"apps"}, {"apps", "a", "b"}, {"run", "bob"}, {"allow"}, {"end", "a", "b"},
		{"peers", "extra"}, {"local-apps", "x"}, {"id", "x"}, {"completion"}, {"completion", "tcsh"},
		{"sandbox", "exec", "peer"}, {"share"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errs := run(t, args...)
			if code != ExitUsage || out != "" || !strings.Contains(errs, "usage: ebrainpool") {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
			}
		})
	}
}

// Every kind in the table is one the completions know.
func TestCompletionKindsKnown(t *testing.T) {
	check := func(where, k string) {
		k = strings.TrimSuffix(k, "...")
		if !completeKinds[k] && !strings.Contains(k, "|") {
			t.Errorf("%s: unknown completion kind %q", where, k)
		}
	}
	for _, c := range commands() {
		for i, a := range c.Args {
			if strings.HasSuffix(a, "...") && i != len(c.Args)-1 {
				t.Errorf("%s: only the last argument kind may repeat", c.Name)
			}
			check(c.Name, a)
		}
		fs := newFlagSet(c)
		for f, k := range c.FlagArgs {
			if fs.Lookup(f) == nil {
				t.Errorf("%s: FlagArgs names no flag --%s", c.Name, f)
			}
			check(c.Name+" --"+f, k)
		}
	}
}
