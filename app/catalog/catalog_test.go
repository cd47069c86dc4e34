package catalog

import (
	"bytes"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestSplitExec(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"gimp %U", []string{"gimp"}, false},
		{`xcalc -geometry "300x400" %f`, []string{"xcalc", "-geometry", "300x400"}, false},
		{`app "a \"quoted\" \$HOME \\ arg"`, []string{"app", `a "quoted" $HOME \ arg`}, false},
		{"app --name=%c --file=%f 100%%", []string{"app", "--name=", "--file=", "100%"}, false},
		{"app   spaced\targs", []string{"app", "spaced", "args"}, false},
		{`app\sname`, []string{"app", "name"}, false},
		{`app "unterminated`, nil, true},
		{"%U", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := SplitExec(tt.in)
			if (err != nil) != tt.err || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("SplitExec(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		file      string
		shareable bool
		name      string
	}{
		{"calc.desktop", true, "Calculator"},
		{"term.desktop", false, ""},
		{"hidden.desktop", false, ""},
		{"missing.desktop", false, ""},
		{"link.desktop", false, ""},
		{"sub/viewer.desktop", true, "viewer"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata/share/applications", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			app, err := Parse(f, "x")
			if tt.shareable != (err == nil) {
				t.Fatalf("Parse: %v (want shareable=%v)", err, tt.shareable)
			}
			if !tt.shareable && !errors.Is(err, ErrNotShareable) {
				t.Fatalf("want ErrNotShareable, got %v", err)
			}
			if tt.shareable && app.Name != tt.name {
				t.Fatalf("name %q, want %q", app.Name, tt.name)
			}
		})
	}
	f, _ := os.Open("testdata/share/applications/calc.desktop")
	defer f.Close()
	app, _ := Parse(f, "calc")
	want := App{ID: "calc", Name: "Calculator", GenericName: "Calculator", Comment: "Add and subtract", Icon: "calc",
		Categories: []string{"Utility", "Calculator"}, Exec: []string{"xcalc", "-geometry", "300x400"},
		ExecFields: []string{"xcalc", "-geometry", "300x400", "%U"}}
	if !reflect.DeepEqual(app, want) {
		t.Fatalf("parsed %+v\nwant   %+v", app, want)
	}
}

func TestParseBounded(t *testing.T) {
	big := "[Desktop Entry]\nType=Application\nName=Big\nExec=x\nComment=" + strings.Repeat("a", 200<<10) + "\n"
	if _, err := Parse(strings.NewReader(big), "big"); err == nil {
		t.Fatal("a 200 KiB line was accepted")
	}
}

func TestScan(t *testing.T) {
	apps, errs := Scan([]string{"testdata/user", "testdata/share"})
	var ids []string
	for _, a := range apps {
		ids = append(ids, a.ID)
	}
	// calc is hidden by the user's own Hidden=true copy; sub/viewer gets the
	// ID "sub-viewer"; the broken file is reported, the others skipped.
	if !reflect.DeepEqual(ids, []string{"sub-viewer"}) {
		t.Fatalf("ids %v", ids)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "unterminated quote") {
		t.Fatalf("errors %v", errs)
	}
	apps, _ = Scan([]string{"testdata/share"})
	if len(apps) != 2 || apps[0].Name != "Calculator" || apps[0].File == "" {
		t.Fatalf("without the user dir: %+v", apps)
	}
}

func TestScanHostApplications(t *testing.T) {
	apps, _ := Scan([]string{"/usr/share"})
	for _, a := range apps {
		if len(a.Exec) == 0 || a.Name == "" {
			t.Errorf("host app %s parsed without Exec or Name: %+v", a.ID, a)
		}
		if strings.ContainsAny(strings.Join(a.Exec, " "), "%") && !strings.Contains(strings.Join(a.Exec, " "), "%%") {
			t.Errorf("field code left in %s: %q", a.ID, a.Exec)
		}
	}
	t.Logf("%d shareable apps on this host", len(apps))
}

func TestIconPNG(t *testing.T) {
	app := App{ID: "calc", Icon: "calc"}
	for _, tt := range []struct {
		want, size int
	}{{32, 48}, {48, 48}, {64, 48}, {200, 256}, {512, 256}} { // the closest size (icon theme spec)
		b, err := IconPNG(app, []string{"testdata/share"}, tt.want)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(b))
		if err != nil || cfg.Width != tt.size {
			t.Fatalf("want %d: got %dx%d (%v), expected %d", tt.want, cfg.Width, cfg.Height, err, tt.size)
		}
	}
	if _, err := IconPNG(App{ID: "v", Icon: "viewer"}, []string{"testdata/share"}, 48); !errors.Is(err, ErrNoIcon) {
		t.Fatalf("missing icon: %v", err)
	}
	if err := ValidPNG([]byte("\x89PNG\r\n\x1a\ngarbage")); err == nil {
		t.Fatal("garbage accepted as PNG")
	}
}

func TestSharing(t *testing.T) {
	var s Sharing
	if s.Shared("calc") {
		t.Fatal("shared by default")
	}
	s.Set("calc", true)
	if !s.Shared("calc") || s.Shared("gimp") {
		t.Fatalf("%+v", s)
	}
	s = Sharing{All: true}
	s.Set("gimp", false)
	if !s.Shared("calc") || s.Shared("gimp") {
		t.Fatalf("%+v", s)
	}
	p := filepath.Join(t.TempDir(), "sharing.json")
	if err := SaveSharing(p, s); err != nil {
		t.Fatal(err)
	}
	got, err := LoadSharing(p)
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip %+v %v", got, err)
	}
	os.WriteFile(p, []byte("{"), 0o600)
	if _, err := LoadSharing(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("corrupt file: %v", err)
	}
	if apps := s.Filter([]App{{ID: "calc"}, {ID: "gimp"}}); len(apps) != 1 || apps[0].ID != "calc" {
		t.Fatalf("filter %+v", apps)
	}
}
