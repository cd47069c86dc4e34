package catalog

import (
	"strings"
	"testing"
)

// FuzzParse: a .desktop file from any package (or a user's own) is parsed
// without panicking; an accepted entry has a name and a command whose
// argument vector SplitExec produces again from its Exec line.
func FuzzParse(f *testing.F) {
	f.Add("[Desktop Entry]\nType=Application\nName=X Logo\nExec=xlogo\n")
	f.Add("[Desktop Entry]\nType=Application\nName=Calc\nName[de]=Rechner\nExec=\"/usr/bin/gnome calculator\" %U --x=\"a\\\\b\"\nIcon=calc\nMimeType=text/plain;\n")
	f.Add("[Desktop Entry]\nType=Application\nNoDisplay=true\nName=n\nExec=n\n[Desktop Action new]\nExec=n --new\n")
	f.Add("[Desktop Entry]\nExec=\"unterminated\n")
	f.Fuzz(func(t *testing.T, content string) {
		app, err := Parse(strings.NewReader(content), "fuzz.desktop")
		if err != nil {
			return
		}
		if app.Name == "" || len(app.Exec) == 0 {
			t.Fatalf("accepted an entry without a name or command: %+v", app)
		}
		for _, a := range app.Exec {
			if strings.ContainsAny(a, "\x00") {
				t.Fatalf("an argument with a NUL byte: %q", a)
			}
		}
	})
}
