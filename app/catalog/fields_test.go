package catalog

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestMimeTypesAndCommand(t *testing.T) {
	entry := "[Desktop Entry]\nType=Application\nName=Ed\nExec=ed --title \"My %%f\" %f\nMimeType=text/plain;Text/Markdown; ;image/*;\n"
	app, err := Parse(strings.NewReader(entry), "ed")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"text/plain", "text/markdown", "image/*"}; !reflect.DeepEqual(app.MimeTypes, want) {
		t.Fatalf("MimeTypes %q, want %q", app.MimeTypes, want)
	}
	if want := []string{"ed", "--title", "My %f"}; !reflect.DeepEqual(app.Exec, want) {
		t.Fatalf("Exec %q, want %q", app.Exec, want)
	}
	for _, tc := range []struct {
		types []string
		want  bool
	}{{[]string{"text/plain"}, true}, {[]string{"image/png"}, true}, {[]string{"application/pdf"}, false}, {[]string{"application/pdf", "text/markdown"}, true}} {
		if got := app.Handles(tc.types...); got != tc.want {
			t.Errorf("Handles(%q) = %v", tc.types, got)
		}
	}
	got, err := app.Command([]string{"/home/guest/alice's files/notes.txt"})
	if want := []string{"ed", "--title", "My %f", "/home/guest/alice's files/notes.txt"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Command: %q, %v; want %q", got, err, want)
	}
	if _, err := app.Command([]string{"/a", "/b"}); !errors.Is(err, ErrOneFile) {
		t.Fatalf("two files for %%f: %v", err)
	}
	if got, _ := app.Command(nil); !reflect.DeepEqual(got, app.Exec) {
		t.Fatalf("no files: %q", got)
	}
	for _, tc := range []struct {
		exec  string
		files []string
		want  []string
		err   error
	}{
		{"view %F", []string{"/x/a b", "/y"}, []string{"view", "/x/a b", "/y"}, nil},
		{"view %U", []string{"/x/a b"}, []string{"view", "file:///x/a%20b"}, nil},
		{"view --file=%f %i", []string{"/x"}, []string{"view", "--file=/x"}, nil},
		{"view %u", []string{"/x/é"}, []string{"view", "file:///x/%C3%A9"}, nil},
		{"view", []string{"/x"}, nil, ErrNoFiles},
	} {
		a, err := Parse(strings.NewReader("[Desktop Entry]\nType=Application\nName=V\nExec="+tc.exec+"\n"), "v")
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.Command(tc.files)
		if !errors.Is(err, tc.err) || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q with %q: %q, %v; want %q, %v", tc.exec, tc.files, got, err, tc.want, tc.err)
		}
	}
}

func TestDetectMIME(t *testing.T) {
	dir := t.TempDir()
	mimeDir := dir + "/share/mime"
	if err := os.MkdirAll(mimeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(mimeDir+"/globs2", []byte("50:text/markdown:*.md\n50:text/x-csrc:*.c\n50:image/png:*.png\n60:text/x-makefile:Makefile\n"), 0o644)
	os.WriteFile(mimeDir+"/subclasses", []byte("text/markdown text/plain\n"), 0o644)
	os.WriteFile(mimeDir+"/aliases", []byte("text/x-c text/x-csrc\n"), 0o644)
	d := loadMIMEDB([]string{dir + "/share"})
	write := func(name, content string) string {
		p := dir + "/" + name
		os.WriteFile(p, []byte(content), 0o644)
		return p
	}
	for _, tc := range []struct {
		path string
		want []string
	}{
		{write("notes.md", "# x"), []string{"text/markdown", "text/plain", "application/octet-stream"}},
		{write("SHOUT.PNG", "\x89PNG\r\n\x1a\n"), []string{"image/png", "application/octet-stream"}},
		{write("Makefile", "all:"), []string{"text/x-makefile", "text/plain", "application/octet-stream"}},
		{write("notes", "plain words"), []string{"text/plain", "application/octet-stream"}},
		{write("blob", "\x00\x01\x02"), []string{"application/octet-stream"}},
		{dir, []string{"inode/directory"}},
	} {
		if got := d.detect(tc.path).Types(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.path, got, tc.want)
		}
	}
}
