package cli

import (
	"bytes"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// overstrike is grotty's bold and underline (char, backspace, char).
var overstrike = regexp.MustCompile(".\b")

func manPage(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteMan(&b, "1.2.3", "2026-01-02"); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// render formats the page with the given command and returns its output as
// plain text; anything on stderr (a groff or man warning) fails the test.
func render(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MANWIDTH=100", "MANPAGER=cat", "PAGER=cat", "LC_ALL=C.UTF-8", "MAN_KEEP_FORMATTING=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	if stderr.Len() > 0 {
		t.Errorf("%s %s warns:\n%s", name, strings.Join(args, " "), stderr.Bytes())
	}
	return overstrike.ReplaceAllString(stdout.String(), "")
}

func TestManPageRenders(t *testing.T) {
	testenv.RequireTools(t, "groff", "man")
	page := filepath.Join(t.TempDir(), "ebrainpool.1")
	if err := os.WriteFile(page, []byte(manPage(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	groff := render(t, "groff", "-man", "-Tutf8", "-ww", "-z", page)
	if groff != "" {
		t.Errorf("groff -z printed output: %q", groff)
	}
	text := render(t, "man", "--warnings=w", "-l", page)
	text = strings.Join(strings.Fields(text), " ")
	for _, sec := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "JSON OUTPUT", "SHELL COMPLETION", "FILES", "EXIT STATUS", "SEE ALSO"} {
		if !strings.Contains(text, " "+sec+" ") {
			t.Errorf("rendered page lacks section %s", sec)
		}
	}
	for _, want := range []string{"eBrainPool 1.2.3", "2026-01-02", "~/.config/ebrainpool/", "~/.local/state/ebrainpool/", "/var/lib/ebrainpool/.setup-USER.json"} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered page lacks %q", want)
		}
	}
	// Every --json command's example, key by key as the schema pins it.
	for _, ex := range jsonExamples() {
		head := strings.Join(strings.Fields("ebrainpool "+ex.Command+" "+ex.Args+" --json"), " ")
		i := strings.Index(text, head+" ")
		if i < 0 {
			t.Errorf("page lacks the JSON example of %q", head)
			continue
		}
		golden, err := os.ReadFile(goldenPath(ex.Command))
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Join(strings.Fields(string(golden)), " "); !strings.Contains(text[i:], want) {
			t.Errorf("the page's example of %q is not testdata's:\n%s", head, want)
		}
	}
	// Every exit status.
	for _, s := range exitStatuses() {
		if !strings.Contains(text, " "+s.Code+" "+strings.Join(strings.Fields(strings.ReplaceAll(s.Meaning, "`", "")), " ")) {
			t.Errorf("page lacks exit status %s", s.Code)
		}
	}
	// Every visible command with its usage and flags, as `ebrainpool CMD
	// --help` shows them; hidden ones not.
	for _, c := range commands() {
		fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		if c.Flags != nil {
			c.Flags(fs)
		}
		head := strings.Join(strings.Fields("ebrainpool "+c.Name+" "+c.Usage), " ")
		if c.Hidden {
			if strings.Contains(text, head+" ") {
				t.Errorf("hidden command %q is in the page", c.Name)
			}
			continue
		}
		if !strings.Contains(text, head+" ") {
			t.Errorf("page lacks command %q (%q)", c.Name, head)
		}
		if !strings.Contains(text, strings.Join(strings.Fields(strings.ReplaceAll(c.Summary, "`", "")), " ")) {
			t.Errorf("page lacks the summary of %q", c.Name)
		}
		fs.VisitAll(func(f *flag.Flag) {
			if !strings.Contains(text, "--"+f.Name) {
				t.Errorf("page lacks flag --%s of %q", f.Name, c.Name)
			}
		})
	}
}

func TestManCommandPrintsPage(t *testing.T) {
	var out, errb bytes.Buffer
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if code := Main([]string{"man", "--version", "9.9"}, nil, &out, &errb); code != 0 {
		t.Fatalf("ebrainpool man: exit %d\n%s", code, errb.Bytes())
	}
	if !strings.HasPrefix(out.String(), `.\"`) || !strings.Contains(out.String(), `.TH EBRAINPOOL 1 "2023\-11\-14" "eBrainPool 9.9"`) {
		t.Errorf("ebrainpool man printed:\n%.300s", out.String())
	}
	// Hidden: --help does not list it.
	out.Reset()
	Main([]string{"--help"}, nil, &out, &errb)
	if strings.Contains(out.String(), "  man ") {
		t.Errorf("--help lists the hidden man command:\n%s", out.String())
	}
}
