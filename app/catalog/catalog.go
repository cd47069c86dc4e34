// Package catalog lists the graphical applications a host can share, from
// the freedesktop .desktop files, with their icons as PNG, and keeps the
// user's choice of which ones are shared. A requester only ever names an
// app by its desktop ID; the command line always comes from the host's file.
package catalog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// App is one shareable application.
type App struct {
	ID          string   `json:"id"` // desktop file ID, e.g. "org.gnome.Calculator"
	Name        string   `json:"name"`
	GenericName string   `json:"generic_name,omitempty"`
	Comment     string   `json:"comment,omitempty"`
	Icon        string   `json:"icon,omitempty"` // icon name or absolute path
	Categories  []string `json:"categories,omitempty"`
	Exec        []string `json:"-"` // argv with field codes removed
	File        string   `json:"-"` // the .desktop file
	// MimeTypes are the file types the app opens (MimeType=).
	MimeTypes []string `json:"mime_types,omitempty"`
	// ExecFields is argv with its file field codes kept (see Command):
	// %f %F %u %U alone as an argument, or %f / %u inside one.
	ExecFields []string `json:"-"`
}

// maxDesktopFile bounds a .desktop file read.
const maxDesktopFile = 64 << 10

// ErrNotShareable marks .desktop entries that are not graphical applications
// a peer could run (hidden, terminal programs, links, missing TryExec...).
var ErrNotShareable = errors.New("not a shareable graphical application")

// Parse reads one .desktop file's [Desktop Entry] group.
func Parse(r io.Reader, id string) (App, error) {
	app := App{ID: id}
	kv := map[string]string{}
	data, err := io.ReadAll(io.LimitReader(r, maxDesktopFile+1))
	if err != nil {
		return app, fmt.Errorf("reading %s: %w", id, err)
	}
	if len(data) > maxDesktopFile {
		return app, fmt.Errorf("%s is larger than %d bytes", id, maxDesktopFile)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 4096), maxDesktopFile+1)
	group := ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			group = line[1 : len(line)-1]
			continue
		}
		if group != "Desktop Entry" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := kv[k]; !dup {
			kv[k] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return app, fmt.Errorf("reading %s: %w", id, err)
	}
	switch {
	case kv["Type"] != "Application":
		return app, fmt.Errorf("%s: Type is %q: %w", id, kv["Type"], ErrNotShareable)
	case kv["Hidden"] == "true":
		return app, fmt.Errorf("%s: Hidden: %w", id, ErrNotShareable)
	case kv["NoDisplay"] == "true":
		return app, fmt.Errorf("%s: NoDisplay: %w", id, ErrNotShareable)
	case kv["Terminal"] == "true":
		return app, fmt.Errorf("%s: a terminal program: %w", id, ErrNotShareable)
	case kv["Name"] == "":
		return app, fmt.Errorf("%s: no Name: %w", id, ErrNotShareable)
	}
	if te := kv["TryExec"]; te != "" && !executable(unescape(te)) {
		return app, fmt.Errorf("%s: TryExec %s not installed: %w", id, te, ErrNotShareable)
	}
	argv, err := SplitExec(kv["Exec"])
	if err != nil {
		return app, fmt.Errorf("%s: %w", id, err)
	}
	if len(argv) == 0 {
		return app, fmt.Errorf("%s: empty Exec: %w", id, ErrNotShareable)
	}
	app.Exec = argv
	app.ExecFields, _ = splitExecFields(kv["Exec"])
	for _, m := range strings.Split(kv["MimeType"], ";") {
		if m = strings.ToLower(strings.TrimSpace(m)); m != "" && strings.Contains(m, "/") {
			app.MimeTypes = append(app.MimeTypes, m)
		}
	}
	app.Name = unescape(kv["Name"])
	app.GenericName = unescape(kv["GenericName"])
	app.Comment = unescape(kv["Comment"])
	app.Icon = unescape(kv["Icon"])
	for _, c := range strings.Split(kv["Categories"], ";") {
		if c = strings.TrimSpace(c); c != "" {
			app.Categories = append(app.Categories, c)
		}
	}
	return app, nil
}

func executable(name string) bool {
	if strings.Contains(name, "/") {
		st, err := os.Stat(name)
		return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
	}
	_, err := exec.LookPath(name)
	return err == nil
}

// unescape handles the string escapes of the desktop entry spec.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	r := strings.NewReplacer(`\s`, " ", `\n`, "\n", `\t`, "\t", `\r`, "\r", `\\`, `\`)
	return r.Replace(s)
}

// SplitExec turns an Exec value into argv: string escapes, then quoting
// ("..." with \" \` \$ \\), then field codes: %f %F %u %U %i %c %k and the
// deprecated %d %D %n %N %v %m are removed (a peer passes no files), %% is %.
func SplitExec(value string) ([]string, error) {
	argv, err := splitQuoted(value)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range argv {
		if len(a) == 2 && a[0] == '%' && strings.IndexByte("fFuUickdDnNvm", a[1]) >= 0 {
			continue // a lone field code: drop the argument
		}
		out = append(out, expandCodes(a, ""))
	}
	return out, nil
}

// expandCodes replaces the field codes inside one argument: %% by %, %f
// and %u by file, any other by nothing.
func expandCodes(a, file string) string {
	var b strings.Builder
	for i := 0; i < len(a); i++ {
		if a[i] == '%' && i+1 < len(a) {
			i++
			switch a[i] {
			case '%':
				b.WriteByte('%')
			case 'f', 'u':
				b.WriteString(file)
			}
			continue // field codes inside an argument expand to nothing
		}
		b.WriteByte(a[i])
	}
	return b.String()
}

// splitExecFields is an Exec value's argv with the string escapes and
// quoting undone and the field codes still in it.
func splitExecFields(value string) ([]string, error) { return splitQuoted(value) }

// splitQuoted undoes an Exec value's string escapes and quoting.
func splitQuoted(value string) ([]string, error) {
	s := unescape(value)
	if strings.IndexByte(s, 0) >= 0 {
		// No argument can hold it (execve ends an argument there).
		return nil, errors.New("the Exec line has a NUL byte")
	}
	var argv []string
	var cur strings.Builder
	inArg, quoted := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\\' && i+1 < len(s) && strings.IndexByte("\"`$\\", s[i+1]) >= 0:
			cur.WriteByte(s[i+1])
			i++
		case c == '"':
			quoted = !quoted
			inArg = true
		case !quoted && (c == ' ' || c == '\t'):
			if inArg {
				argv = append(argv, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote in Exec %q", value)
	}
	if inArg {
		argv = append(argv, cur.String())
	}
	return argv, nil
}

// DataDirs are the XDG data directories, most important first: the user's
// own, then $XDG_DATA_DIRS (default /usr/local/share:/usr/share).
func DataDirs(home string) []string {
	var dirs []string
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		dirs = append(dirs, d)
	} else if home != "" {
		dirs = append(dirs, filepath.Join(home, ".local/share"))
	}
	sys := os.Getenv("XDG_DATA_DIRS")
	if sys == "" {
		sys = "/usr/local/share:/usr/share"
	}
	for _, d := range strings.Split(sys, ":") {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// Scan lists the shareable apps under DIR/applications for each data dir.
// An ID found in an earlier dir hides the same ID in later ones (so a user's
// Hidden=true copy removes a system app). Unreadable or invalid files are
// skipped; their errors are returned alongside (not ErrNotShareable ones).
func Scan(dataDirs []string) ([]App, []error) {
	seen := map[string]bool{}
	var apps []App
	var errs []error
	for _, d := range dataDirs {
		root := filepath.Join(d, "applications")
		filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(p, ".desktop") {
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			id := strings.TrimSuffix(strings.ReplaceAll(rel, "/", "-"), ".desktop")
			if seen[id] {
				return nil
			}
			seen[id] = true
			f, err := os.Open(p)
			if err != nil {
				errs = append(errs, err)
				return nil
			}
			defer f.Close()
			app, err := Parse(f, id)
			if err != nil {
				if !errors.Is(err, ErrNotShareable) {
					errs = append(errs, err)
				}
				return nil
			}
			app.File = p
			apps = append(apps, app)
			return nil
		})
	}
	sort.Slice(apps, func(i, j int) bool {
		if a, b := strings.ToLower(apps[i].Name), strings.ToLower(apps[j].Name); a != b {
			return a < b
		}
		return apps[i].ID < apps[j].ID
	})
	return apps, errs
}
