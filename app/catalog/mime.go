package catalog

import (
	"bufio"
	"bytes"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// MIMEInfo says a file's type as the freedesktop shared MIME database
// does (the globs2, subclasses and aliases files of DIR/mime for each
// data directory), and the types it is a kind of, so an app that opens
// text/plain is offered for a text/markdown file.
type MIMEInfo struct {
	Type    string   // e.g. "text/markdown"
	Parents []string // its supertypes, nearest first ("text/plain")
}

// Types is the type and its parents.
func (m MIMEInfo) Types() []string { return append([]string{m.Type}, m.Parents...) }

type glob struct {
	weight  int
	pattern string
	typ     string
	literal bool // no wildcard: a whole file name
}

type mimeDB struct {
	globs   []glob
	parents map[string][]string
	aliases map[string]string
}

var (
	dbOnce sync.Once
	db     *mimeDB
)

// loadMIMEDB reads the shared MIME database of the data directories
// (most important first).
func loadMIMEDB(dataDirs []string) *mimeDB {
	d := &mimeDB{parents: map[string][]string{}, aliases: map[string]string{}}
	for i := len(dataDirs) - 1; i >= 0; i-- {
		dir := filepath.Join(dataDirs[i], "mime")
		eachLine(filepath.Join(dir, "globs2"), func(l string) {
			f := strings.SplitN(l, ":", 4)
			if len(f) < 3 {
				return
			}
			w, err := strconv.Atoi(f[0])
			if err != nil {
				return
			}
			pat := f[2]
			d.globs = append(d.globs, glob{weight: w, pattern: pat, typ: f[1], literal: !strings.ContainsAny(pat, "*?[")})
		})
		eachLine(filepath.Join(dir, "subclasses"), func(l string) {
			if c, p, ok := strings.Cut(l, " "); ok {
				d.parents[c] = append(d.parents[c], p)
			}
		})
		eachLine(filepath.Join(dir, "aliases"), func(l string) {
			if a, t, ok := strings.Cut(l, " "); ok {
				d.aliases[a] = t
			}
		})
	}
	// Literal names first, then by weight, then the longest pattern.
	sort.SliceStable(d.globs, func(i, j int) bool {
		a, b := d.globs[i], d.globs[j]
		if a.literal != b.literal {
			return a.literal
		}
		if a.weight != b.weight {
			return a.weight > b.weight
		}
		return len(a.pattern) > len(b.pattern)
	})
	return d
}

func eachLine(path string, f func(string)) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			f(l)
		}
	}
}

// DetectMIME says what type the file at path is: by its name (the MIME
// database's globs, case-insensitively as the spec allows), else by its
// first bytes (text, or what net/http recognizes), else
// application/octet-stream. A directory is inode/directory.
func DetectMIME(path string) MIMEInfo {
	dbOnce.Do(func() { db = loadMIMEDB(DataDirs(os.Getenv("HOME"))) })
	return db.detect(path)
}

func (d *mimeDB) detect(path string) MIMEInfo {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return MIMEInfo{Type: "inode/directory"}
	}
	t := d.byName(filepath.Base(path))
	if t == "" {
		t = sniff(path)
	}
	if a, ok := d.aliases[t]; ok {
		t = a
	}
	return MIMEInfo{Type: t, Parents: d.ancestors(t)}
}

func (d *mimeDB) byName(name string) string {
	lower := strings.ToLower(name)
	for _, g := range d.globs {
		if g.literal {
			if g.pattern == name {
				return g.typ
			}
			continue
		}
		if ok, _ := filepath.Match(g.pattern, name); ok {
			return g.typ
		}
		if ok, _ := filepath.Match(strings.ToLower(g.pattern), lower); ok {
			return g.typ
		}
	}
	if len(d.globs) == 0 {
		// No shared MIME database: /etc/mime.types through Go's table.
		if t := mime.TypeByExtension(filepath.Ext(name)); t != "" {
			t, _, _ = strings.Cut(t, ";")
			return strings.TrimSpace(t)
		}
	}
	return ""
}

// sniff is the type of a file without a known name, from its first bytes.
func sniff(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "application/octet-stream"
	}
	defer f.Close()
	buf := make([]byte, 512)
	n, _ := f.Read(buf)
	buf = buf[:n]
	if n == 0 {
		return "text/plain" // an empty file: the spec's choice
	}
	if utf8.Valid(buf) && !bytes.ContainsRune(buf, 0) {
		return "text/plain"
	}
	t, _, _ := strings.Cut(http.DetectContentType(buf), ";")
	return t
}

// ancestors are t's supertypes, nearest first: the database's, then the
// spec's implicit ones (text/* is text/plain, everything but inode/* is
// application/octet-stream).
func (d *mimeDB) ancestors(t string) []string {
	seen := map[string]bool{t: true}
	var out []string
	queue := []string{t}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		for _, p := range d.parents[c] {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
				queue = append(queue, p)
			}
		}
	}
	if strings.HasPrefix(t, "text/") && !seen["text/plain"] {
		out = append(out, "text/plain")
		seen["text/plain"] = true
	}
	if !strings.HasPrefix(t, "inode/") && !seen["application/octet-stream"] {
		out = append(out, "application/octet-stream")
	}
	return out
}
