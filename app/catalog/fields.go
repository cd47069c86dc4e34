package catalog

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrNoFiles is Command's error for an app whose Exec line takes no files.
var ErrNoFiles = errors.New("the app's command line takes no files")

// ErrOneFile is Command's error for several files given to an app whose
// Exec line takes one (%f or %u).
var ErrOneFile = errors.New("the app opens one file at a time")

// TakesFiles reports whether the app's Exec line has a file field code
// (%f %F %u %U).
func (a App) TakesFiles() bool {
	for _, f := range a.ExecFields {
		if strings.ContainsAny(codesIn(f), "fFuU") {
			return true
		}
	}
	return false
}

// codesIn are the field code letters in one argument (%% is none).
func codesIn(arg string) string {
	var b strings.Builder
	for i := 0; i+1 < len(arg); i++ {
		if arg[i] == '%' {
			i++
			if arg[i] != '%' {
				b.WriteByte(arg[i])
			}
		}
	}
	return b.String()
}

// Command is the app's argv opening files (paths as the app sees them):
// the Exec line's %F and %U become one argument per file, %f and %u the
// one file (a file:// URL for %u and %U), every other field code nothing.
// With no files it is Exec. Files for an Exec line without a file field
// code are ErrNoFiles; several for one with %f or %u only, ErrOneFile.
func (a App) Command(files []string) ([]string, error) {
	if len(files) == 0 {
		return append([]string(nil), a.Exec...), nil
	}
	if len(a.ExecFields) == 0 || !a.TakesFiles() {
		return nil, fmt.Errorf("%s: %w", a.Name, ErrNoFiles)
	}
	list := false
	for _, f := range a.ExecFields {
		list = list || f == "%F" || f == "%U"
	}
	if len(files) > 1 && !list {
		return nil, fmt.Errorf("%s: %w", a.Name, ErrOneFile)
	}
	var out []string
	used := false // one %f/%u expansion at most, as the spec says
	for _, f := range a.ExecFields {
		switch f {
		case "%F":
			out = append(out, files...)
			continue
		case "%U":
			for _, p := range files {
				out = append(out, fileURL(p))
			}
			continue
		case "%i", "%c", "%k", "%d", "%D", "%n", "%N", "%v", "%m":
			continue
		}
		if len(f) == 2 && (f == "%f" || f == "%u") {
			if used || list {
				continue
			}
			used = true
			if f == "%u" {
				out = append(out, fileURL(files[0]))
			} else {
				out = append(out, files[0])
			}
			continue
		}
		file := ""
		if codes := codesIn(f); !used && !list && strings.ContainsAny(codes, "fu") {
			used = true
			file = files[0]
			if strings.ContainsRune(codes, 'u') {
				file = fileURL(file)
			}
		}
		out = append(out, expandCodes(f, file))
	}
	return out, nil
}

// fileURL is a file:// URL for an absolute path.
func fileURL(p string) string {
	return (&url.URL{Scheme: "file", Path: p}).String()
}

// Handles reports whether the app declares mimeType, or one of its
// parents (as MIMEInfo.Parents lists them), or a wildcard covering it
// ("text/*", "all/all").
func (a App) Handles(types ...string) bool {
	for _, t := range types {
		for _, m := range a.MimeTypes {
			if m == t || m == "all/all" || m == "*/*" ||
				(strings.HasSuffix(m, "/*") && strings.HasPrefix(t, strings.TrimSuffix(m, "*"))) {
				return true
			}
		}
	}
	return false
}
